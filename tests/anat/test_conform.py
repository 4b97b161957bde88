"""conform: refuse what cannot be synthesized, repair what safely can, round-trip orientation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.conform import conform, load_checked, to_source_orientation
from tumsyn_bids.errors import DataError


def _blob(shape=(10, 12, 14)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    return (100 * np.exp(-(grid**2).sum(0) * 2) + np.arange(np.prod(shape)).reshape(shape) * 1e-3).astype(np.float32)


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


LAS = np.array([[-2.0, 0, 0, 30], [0, 2.0, 0, -20], [0, 0, 2.5, -10], [0, 0, 0, 1]])


def test_reorients_to_ras_and_back_exactly(tmp_path):
    data = _blob()
    src = _save(tmp_path / "sub-01_T1w.nii.gz", data, LAS)
    report = conform(src, tmp_path / "c.nii.gz")
    assert report.orientation == "LAS" and report.repairs == ()
    out = nib.load(str(tmp_path / "c.nii.gz"))
    assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
    assert out.get_data_dtype() == np.float32
    back = to_source_orientation(out, src)
    assert np.allclose(back.affine, LAS)
    assert np.array_equal(np.asarray(back.dataobj), data)


def test_singleton_4d_is_squeezed_and_real_4d_refused(tmp_path):
    img, repairs = load_checked(_save(tmp_path / "a.nii.gz", _blob()[..., None], np.eye(4)))
    assert img.shape == (10, 12, 14) and "singleton" in repairs[0]
    four_d = _save(tmp_path / "b.nii.gz", np.stack([_blob(), _blob()], -1), np.eye(4))
    with pytest.raises(DataError, match="expected a 3D image") as err:
        load_checked(four_d)
    assert str(four_d) in str(err.value)


def test_non_finite_voxels_repaired_all_nan_refused(tmp_path):
    data = _blob()
    data[0, 0, :3] = np.nan
    img, repairs = load_checked(_save(tmp_path / "a.nii.gz", data, np.eye(4)))
    assert np.isfinite(np.asarray(img.dataobj)).all() and "3 non-finite" in repairs[0]
    with pytest.raises(DataError, match="no finite values"):
        load_checked(_save(tmp_path / "b.nii.gz", np.full((4, 4, 4), np.nan, np.float32), np.eye(4)))
    with pytest.raises(DataError, match="constant"):
        load_checked(_save(tmp_path / "c.nii.gz", np.ones((4, 4, 4), np.float32), np.eye(4)))


def test_degenerate_affine_is_repaired_from_voxel_sizes(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((10, 12, 14))
    header.set_data_dtype(np.float32)
    header.set_zooms((1.5, 1.5, 2.0))
    header.set_sform(np.zeros((4, 4)), code=1)  # degenerate sform, no qform
    header.set_qform(None, code=0)
    path = tmp_path / "deg.nii"
    with open(path, "wb") as handle:  # write the header as is (nibabel's save would refresh it)
        header.write_to(handle)
        handle.write(b"\0" * (int(header.get_data_offset()) - handle.tell()))
        handle.write(_blob().tobytes(order="F"))
    assert nib.load(str(path)).header.get_sform(coded=True)[1] == 1
    fixed, repairs = load_checked(path)
    assert any(r.startswith("sform unusable (singular matrix) and no qform: orientation unknown") for r in repairs)
    assert np.allclose(np.abs(np.diag(fixed.affine)[:3]), (1.5, 1.5, 2.0))


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "sub-01_T1w.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    with pytest.raises(DataError) as err:
        load_checked(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
