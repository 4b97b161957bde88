"""The affine written to the outputs, for every geometry case (issue 19, item 3).

``test_geometry.py``, ``test_conform.py`` and the corpus' geometry cases check the warning text and
the voxel sizes; these check where the outputs are placed in space. Each source header below goes
through the real conform step, an identity "synthesis" (the conformed image itself, so the output
must reproduce the source voxel for voxel) and the real derivatives writer; the synthetic image
and the brain mask must carry the affine that the rules (README, "Geometry") say wins. The
expected affines are written out here by hand, not taken from ``inspect_geometry``.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.conform import conform
from tumsyn_bids.anat.outputs import write_synthetic

SHAPE = (10, 12, 14)
GEO = np.array([[2.0, 0, 0, -15], [0, 2.0, 0, -15], [0, 0, 2.0, -15], [0, 0, 0, 1]])
# No usable sform or qform: nibabel's base affine, 2 mm voxels in LAS order, volume centre at 0
BASE = np.diag([-2.0, 2.0, 2.0, 1.0])
BASE[:3, 3] = -BASE[:3, :3] @ ((np.asarray(SHAPE) - 1) / 2.0)
ROT = np.array([[np.cos(0.4), -np.sin(0.4), 0], [np.sin(0.4), np.cos(0.4), 0], [0, 0, 1]])
OBLIQUE = GEO.copy()
OBLIQUE[:3, :3] = ROT @ np.diag([2.0, 2.0, 2.0])
FLIPPED = GEO.copy()
FLIPPED[0, 0], FLIPPED[0, 3] = -2.0, 15.0
SHIFTED = GEO.copy()
SHIFTED[:3, 3] += (30.0, 0.0, 0.0)
SHEARED = GEO.copy()
SHEARED[0, 1] = 0.5


def _blob() -> np.ndarray:
    """Off-centre and lopsided, so a flip or a shift of the voxels is visible in the data too."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    inside = ((i - 4) / 4) ** 2 + ((j - 6) / 5) ** 2 + ((k - 7) / 6) ** 2 < 1
    return np.where(inside, 50 + 3 * i + 2 * j + k, 1).astype(np.float32)


def _save_raw(path, edit: Callable[[nib.Nifti1Header], None]):
    """A .nii.gz with exactly the header ``edit`` leaves (nibabel's save would refresh sform/qform)."""
    header = nib.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_data_dtype(np.float32)
    header.set_zooms((2.0, 2.0, 2.0))
    header.set_sform(GEO, code=1)
    header.set_qform(GEO, code=1)
    edit(header)
    raw = io.BytesIO()
    header.write_to(raw)
    raw.write(b"\0" * (int(header.get_data_offset()) - raw.tell()))
    raw.write(_blob().tobytes(order="F"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def _set_sform(affine, code=1):
    return lambda h: h.set_sform(affine, code=code)


def _set_qform(affine, code=1):
    return lambda h: h.set_qform(affine, code=code)


def _both(*edits):
    def edit(h):
        for e in edits:
            e(h)
    return edit


def _codes(s=None, q=None):
    def edit(h):
        if s is not None:
            h["sform_code"] = s
        if q is not None:
            h["qform_code"] = q
    return edit


def _set(name, value):
    def edit(h):
        h[name] = value
    return edit


def _nearest_rotation_of_sheared() -> np.ndarray:
    """The sheared sform's nearest rotation times its column lengths, about the volume centre."""
    zooms = np.linalg.norm(SHEARED[:3, :3], axis=0)
    u, _, vt = np.linalg.svd(SHEARED[:3, :3] / zooms)
    out = SHEARED.copy()
    out[:3, :3] = (u @ vt) * zooms
    centre = (np.asarray(SHAPE) - 1) / 2.0
    out[:3, 3] = SHEARED[:3, :3] @ centre + SHEARED[:3, 3] - out[:3, :3] @ centre
    return out


def _pixdim(h):
    h["pixdim"][1:4] = 1.0


def _qfac_zero(h):
    h["pixdim"][0] = 0.0


def _nan_both(h):
    h["srow_x"] = [np.nan] * 4
    h["qoffset_x"] = np.nan


# case: (header edit, the affine the outputs must carry, whether the sidecar records a repair)
CASES = {
    "sound": (lambda h: None, GEO, False),
    "oblique_sform_equals_qform": (_both(_set_sform(OBLIQUE), _set_qform(OBLIQUE)), OBLIQUE, False),
    "qfac_zero": (_qfac_zero, GEO, False),
    "sform_qform_shifted": (_set_qform(SHIFTED), GEO, True),  # the sform wins (the NIfTI rule)
    "sform_qform_flipped": (_set_qform(FLIPPED), GEO, True),
    "sform_qform_conflict_qform_oblique": (_set_qform(OBLIQUE), GEO, True),
    "sform_shifted_qform_sound": (_set_sform(SHIFTED), SHIFTED, True),
    "bad_quaternion_beside_sform": (_set("quatern_b", 1.5), GEO, True),
    "pixdim_differs_from_sform": (_pixdim, GEO, True),
    "singular_sform_with_qform": (_set_sform(np.diag([0.0, 0.0, 0.0, 1.0])), GEO, True),
    "singular_sform_with_shifted_qform": (_both(_set_sform(np.diag([0.0, 0.0, 0.0, 1.0])), _set_qform(SHIFTED)),
                                          SHIFTED, True),
    "sheared_sform_with_qform": (_both(_set_sform(SHEARED), _set_qform(SHIFTED)), SHIFTED, True),
    "sheared_sform_no_qform": (_both(_set_sform(SHEARED), _codes(q=0)), _nearest_rotation_of_sheared(), True),
    "qform_only": (_both(_set_qform(SHIFTED), _codes(s=0)), SHIFTED, False),
    "singular_sform_only": (_both(_set_sform(np.diag([0.0, 0.0, 0.0, 1.0])), _codes(q=0)), BASE, True),
    "no_sform_no_qform": (_codes(s=0, q=0), BASE, True),
    "nan_sform_and_qform": (_nan_both, BASE, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_carry_the_affine_the_rules_choose(tmp_path, case):
    edit, expected, repaired = CASES[case]
    bids = tmp_path / "bids"
    src = _save_raw(bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz", edit)
    conformed = tmp_path / "work" / "source_ras.nii.gz"
    conformed.parent.mkdir()
    conform(src, conformed)
    ras = nib.load(str(conformed))
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    mask = tmp_path / "work" / "mask.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(ras.dataobj) > 10).astype(np.uint8), ras.affine), str(mask))
    written = write_synthetic(
        out_dir=tmp_path / "out", bids_dir=bids, source_file=src, synth_file=conformed, mask_file=mask,
        target="T2w", prompt="Modality: T2w.",
        synthesis={"model_name": "identity (test)", "sha256": "0" * 64, "device": "cpu", "voxel_size": [2.0] * 3},
        mask_info={"method": "threshold (test)", "detail": "", "volume_ml": 1.0},
        source_metadata={}, conditioning={},
    )
    image, mask_out = nib.load(written["image"]), nib.load(written["mask"])
    for what, img in (("synthetic image", image), ("brain mask", mask_out)):
        assert img.shape == SHAPE, what
        assert np.allclose(img.affine, expected, atol=1e-4), f"{what}: affine\n{img.affine}\nexpected\n{expected}"
        # the written header says the same through both of its forms (readers differ in which they use)
        assert np.allclose(img.header.get_sform(), expected, atol=1e-4), what
        assert int(img.header["sform_code"]) > 0, what
        if int(img.header["qform_code"]) > 0:
            assert np.allclose(img.header.get_qform(), expected, atol=1e-4), what
    # identity synthesis on the source's own grid: the source voxels come back where they were
    assert np.allclose(np.asarray(image.dataobj), _blob())
    assert np.array_equal(np.asarray(mask_out.dataobj) > 0, _blob() > 10)
    for sidecar in (written["sidecar"], written["mask"].replace(".nii.gz", ".json")):
        record = json.loads(open(sidecar).read()).get("SourceGeometry")
        assert (record is not None) is repaired, sidecar
        if record:
            assert np.allclose(record["Affine"], expected, atol=1e-5)
