"""Broken sform/qform: the affine chosen, what ANTs can read afterwards, and the sidecar record."""

from __future__ import annotations

import gzip
import io
import json

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.conform import (
    CONFLICT_MM,
    check_header_geometry,
    conform,
    corner_distance,
    geometry_of,
    to_source_orientation,
)
from tumsyn_bids.errors import DataError

SHAPE = (10, 12, 14)
RAS = np.array([[2.0, 0, 0, -10], [0, 2.0, 0, -12], [0, 0, 2.0, -14], [0, 0, 0, 1]])


def _blob() -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    return (100 * np.exp(-(grid**2).sum(0) * 2) + 1).astype(np.float32)


def _write(path, sform=RAS, scode=1, qform=RAS, qcode=1, edit=None):
    """A .nii.gz whose header is exactly as given (nibabel's save would refresh sform/qform)."""
    header = nib.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_data_dtype(np.float32)
    header.set_zooms((2.0, 2.0, 2.0))
    header.set_sform(sform, code=scode)
    header.set_qform(qform, code=qcode)
    if edit:
        edit(header)
    raw = io.BytesIO()
    header.write_to(raw)
    raw.write(b"\0" * (int(header.get_data_offset()) - raw.tell()))
    raw.write(_blob().tobytes(order="F"))
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def test_sound_header_has_no_problems(tmp_path):
    geometry = geometry_of(_write(tmp_path / "a.nii.gz"))
    assert geometry.origin == "sform" and geometry.problems == () and geometry.record() is None
    assert np.allclose(geometry.affine, RAS)


def test_conflict_threshold(tmp_path):
    near = RAS.copy()
    near[0, 3] += CONFLICT_MM / 2  # converter rounding, not a conflict
    assert geometry_of(_write(tmp_path / "a.nii.gz", qform=near)).problems == ()
    far = RAS.copy()
    far[0, 3] += 3 * CONFLICT_MM
    problems = geometry_of(_write(tmp_path / "b.nii.gz", qform=far)).problems
    assert len(problems) == 1 and problems[0].startswith("sform and qform disagree (corners up to 1.5 mm apart")


def test_sheared_sform_becomes_readable_for_ants_with_the_same_centre(tmp_path):
    sheared = RAS.copy()
    sheared[0, 1] = 0.5
    src = _write(tmp_path / "sub-01_T1w.nii.gz", sform=sheared, qcode=0)
    geometry = geometry_of(src)
    assert geometry.origin == "sform, shear removed"
    rot = geometry.affine[:3, :3] / np.linalg.norm(geometry.affine[:3, :3], axis=0)
    assert np.allclose(rot.T @ rot, np.eye(3), atol=1e-9)
    centre = np.append((np.array(SHAPE) - 1) / 2.0, 1.0)
    assert np.allclose(geometry.affine @ centre, sheared @ centre)
    assert 0 < corner_distance(geometry.affine, sheared, SHAPE) < 5
    ants = pytest.importorskip("ants")
    with pytest.raises(RuntimeError, match="orthonormal"):  # what the brain-mask node used to meet
        ants.image_read(str(src))
    conform(src, tmp_path / "c.nii.gz")
    image = ants.image_read(str(tmp_path / "c.nii.gz"))
    assert image.shape == SHAPE


def test_degenerate_sform_falls_back_to_the_qform_and_outputs_carry_it(tmp_path):
    src = _write(tmp_path / "sub-01_T1w.nii.gz", sform=np.zeros((4, 4)), scode=2)
    report = conform(src, tmp_path / "c.nii.gz")
    assert report.repairs == ("sform (code 2) is unusable (singular matrix): used the qform (RAS)",)
    back = to_source_orientation(nib.load(str(tmp_path / "c.nii.gz")), src)
    assert np.allclose(back.affine, RAS)


def test_impossible_quaternion_without_sform_is_refused(tmp_path):
    def bad(header):
        header["quatern_b"] = 1.5

    src = _write(tmp_path / "sub-01_T1w.nii.gz", scode=0, edit=bad)
    with pytest.raises(DataError, match=r"sub-01_T1w.nii.gz: qform \(code 1\) holds an impossible quaternion"):
        check_header_geometry(src)
    check_header_geometry(_write(tmp_path / "ok.nii.gz", edit=bad))  # a usable sform beside it: repaired


def test_mask_and_synthetic_sidecars_record_the_repair(tmp_path):
    from tumsyn_bids.anat.outputs import source_geometry, write_mask

    bids = tmp_path / "bids"
    src = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    src.parent.mkdir(parents=True)
    _write(src, scode=0, qcode=0)
    conform(src, tmp_path / "c.nii.gz")
    conformed = nib.load(str(tmp_path / "c.nii.gz"))
    mask = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(conformed.dataobj) > 50).astype(np.uint8), conformed.affine), str(mask))
    written = write_mask(tmp_path / "out", bids, src, mask, {"method": "x", "detail": "d", "volume_ml": 1.0})
    sidecar = json.loads(written.with_name("sub-01_desc-brain_mask.json").read_text())
    record = sidecar["SourceGeometry"]
    assert record["AffineFrom"] == "voxel sizes"
    assert record["Repairs"][0].startswith(
        "no sform or qform (both codes 0): orientation unknown; assumed 2 x 2 x 2 mm")
    assert np.allclose(nib.load(str(written)).affine, record["Affine"])  # the mask carries the assumed geometry
    assert source_geometry(_write(tmp_path / "fine.nii.gz")) == {}  # nothing recorded for a sound header
