"""A generated corpus of malformed or awkward BIDS datasets, each run through the real CLI.

Table-driven: every case builds a small dataset (real NIfTI files, real sidecars), runs
``python -m tumsyn_bids`` in a subprocess and checks the exit code and the last stderr line.
The checks shared by every case (conftest ``robust_run``): BIDS_DIR unchanged (checksums), no
partial file in OUTPUT_DIR, no traceback or nipype chatter on the console. Cases that should
succeed run with ``--dry-run`` (planning only) and check the plan; the few that need a real
synthesis are in test_synthesis_cases.py.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import fixtures_bids as fx
import nibabel as nb
import numpy as np
import pytest

H = sys.modules["tumsyn_robustness_helpers"]  # tests/robustness/helpers.py, loaded by conftest.py

T1 = dict(fx.EYETRACKING_T1W)
SHAPE = (16, 16, 16)


# --- building blocks ----------------------------------------------------------------------------


def blob(shape=SHAPE, dtype=np.int16, scale=1000.0) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[:3]], indexing="ij"))
    return (scale * np.exp(-(grid**2).sum(0) * 2)).astype(dtype)


def save(path: Path, data: np.ndarray, affine=None, **header) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nb.Nifti1Image(data, np.eye(4) if affine is None else affine)
    for key, value in header.items():
        img.header[key] = value
    nb.save(img, str(path))
    return path


def base(root: Path, images: dict | None = None, **kwargs) -> Path:
    """One participant with a T1w (and its sidecar) unless ``images`` says otherwise."""
    images = images if images is not None else {"sub-01/anat/sub-01_T1w.nii.gz": T1}
    fx.make_dataset(root, images, participants=kwargs.pop("participants", "participant_id\tage\tsex\nsub-01\t40\tF\n"),
                    **kwargs)
    return root


def image_of(root: Path, sub: str = "01") -> Path:
    return root / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"


# --- dataset builders: each returns the extra CLI arguments -------------------------------------


def b_no_description(root):
    base(root)
    (root / "dataset_description.json").unlink()
    return []


def b_description_not_json(root):
    base(root)
    (root / "dataset_description.json").write_text("{Name: x")
    return []


def b_description_no_version(root):
    base(root)
    fx.write_json(root / "dataset_description.json", {"Name": "x"})
    return []


def b_sidecar_not_json(root):
    base(root)
    (root / "sub-01/anat/sub-01_T1w.json").write_text('{"RepetitionTime": 2.3,')
    return []


def b_sidecar_not_json_skip(root):
    b_sidecar_not_json(root)
    return ["--skip-bids-validation"]


def b_missing_bids_dir(root):
    return ["--participant-label", "01"]  # root is never created


def b_unknown_label(root):
    base(root)
    return ["--participant-label", "07"]


def b_only_func(root):
    base(root, images={})
    save(root / "sub-01/func/sub-01_task-rest_bold.nii.gz", np.zeros((4, 4, 4, 3), np.int16) + 1)
    return []


def b_wrong_suffix_case(root):
    base(root, images={})
    fx.write_nifti(root / "sub-01/anat/sub-01_t1w.nii.gz")
    return []


def b_not_bids_name(root):
    base(root, images={})
    fx.write_nifti(root / "sub-01/anat/mprage.nii.gz")
    return []


def b_truncated_gz(root):
    base(root)
    path = image_of(root)
    save(path, blob((40, 40, 40), np.float32, 1.0) + np.random.default_rng(0).random((40, 40, 40), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return []


def b_truncated_nii(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii": T1})
    path = root / "sub-01/anat/sub-01_T1w.nii"
    save(path, blob())
    data = path.read_bytes()
    path.write_bytes(data[:1000])
    return []


def b_corrupt_gz(root):
    base(root)
    path = image_of(root)
    save(path, blob((40, 40, 40), np.float32, 1.0) + np.random.default_rng(1).random((40, 40, 40), np.float32))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return []


def b_empty_file(root):
    base(root)
    image_of(root).write_bytes(b"")
    return []


def b_text_file(root):
    base(root)
    image_of(root).write_bytes(gzip.compress(b"this is not a NIfTI file\n" * 20))
    return []


def b_rgb(root):
    base(root)
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = blob(dtype=np.uint8, scale=200)
    save(image_of(root), rgb)
    return []


def b_complex(root):
    base(root)
    save(image_of(root), (blob(dtype=np.float32) * (1 + 1j)).astype(np.complex64))
    return []


def b_all_nan(root):
    base(root)
    save(image_of(root), np.full(SHAPE, np.nan, np.float32))
    return []


def b_all_zero(root):
    base(root)
    save(image_of(root), np.zeros(SHAPE, np.int16))
    return []


def b_constant(root):
    base(root)
    save(image_of(root), np.full(SHAPE, 7, np.int16))
    return []


def b_4d(root):
    base(root)
    save(image_of(root), np.stack([blob()] * 3, axis=-1))
    return []


def b_one_slice(root):
    base(root)
    save(image_of(root), blob((16, 16, 1)))
    return []


def b_zero_voxel_size(root):
    base(root)
    path = save(image_of(root), blob())
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[76 + 8:76 + 12] = np.float32(0.0).tobytes()  # pixdim[2] = 0 (nibabel would repair it on save)
    path.write_bytes(gzip.compress(bytes(raw)))
    return []


def b_dangling_annex(root):
    base(root)
    H.annex(root, names_absent=("sub-01_T1w.nii.gz",))
    return []


def b_all_sources_unreadable_two_participants(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": T1, "sub-02/anat/sub-02_T1w.nii.gz": T1})
    save(image_of(root, "01"), np.zeros(SHAPE, np.int16))
    image_of(root, "02").write_bytes(b"")
    return []


def b_malformed_filter(root):
    base(root)
    (root.parent / "filter.json").write_text("{not json")
    return ["--bids-filter-file", root.parent / "filter.json"]


def b_unknown_option(root):
    base(root)
    return ["--no-such-option"]


def b_workdir_inside(root):
    base(root)
    return ["-w", root / "work"]


def b_output_blocked(root):
    base(root)
    (root.parent / "blocker").write_text("a file where OUTPUT_DIR's parent should be")
    return ["--output-blocked"]  # replaced by the test: OUTPUT_DIR under a regular file


def b_weights_missing(root):
    base(root)
    return ["--weights", root.parent / "nope.pt"]


def b_weights_pair_missing_part(root):
    base(root)
    (root.parent / "a.pth").write_bytes(b"x")
    return ["--weights", f"{root.parent / 'a.pth'}{os.pathsep}{root.parent / 'b.pth'}"]


def b_weights_random(root):
    base(root)
    (root.parent / "random.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    return ["--weights", root.parent / "random.pt"]


def b_weights_text(root):
    base(root)
    (root.parent / "notes.pt").write_text("not weights")
    return ["--weights", root.parent / "notes.pt"]


def b_weights_empty_dir(root):
    base(root)
    (root.parent / "wdir").mkdir()
    (root.parent / "wdir" / "README").write_text("weights go here")
    return ["--weights", root.parent / "wdir"]


# --- dry-run (success) builders: (args, check(plan, stderr)) -------------------------------------


def plan_of(work: Path) -> dict:
    plans = sorted(work.glob("*/plan.json"))
    assert plans, "no plan.json written"
    return json.loads(plans[-1].read_text())


def b_tr_in_ms(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": dict(T1, RepetitionTime=2300)})
    return ["--dry-run"]


def c_tr_in_ms(plan, stderr):
    sidecar = "sub-01/anat/sub-01_T1w.json"
    assert re.search(rf"warning: \S*{sidecar}: RepetitionTime 2300 is outside .*milliseconds", stderr)
    out = plan["outputs"][0]
    assert out["source_prompt_fields"]["tr_ms"] is None
    assert "TR(ms), TE(ms), TI(ms), and FA(degree):  (None, 2.3, 900.0, 9.0)" in out["source_prompt"]
    assert any("RepetitionTime" in note and "None in the prompt" in note for note in out["notes"])
    assert "RepetitionTime" not in out["source_metadata"]
    assert any("RepetitionTime" in w for w in plan["warnings"])


def b_strings_in_sidecar(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": dict(T1, EchoTime="0.00228", FlipAngle="nine")})
    return ["--dry-run"]


def c_strings_in_sidecar(plan, stderr):
    assert "EchoTime is text '0.00228', not a number" in stderr and "FlipAngle is text 'nine'" in stderr
    fields = plan["outputs"][0]["source_prompt_fields"]
    assert fields["te_ms"] is None and fields["flip_angle"] is None and fields["tr_ms"] == pytest.approx(2300)


def b_negative_te(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": dict(T1, EchoTime=-0.003)})
    return ["--dry-run"]


def c_negative_te(plan, stderr):
    assert "EchoTime -0.003 is outside the plausible range" in stderr
    assert plan["outputs"][0]["source_prompt_fields"]["te_ms"] is None


def b_field_strength_mT(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": dict(T1, MagneticFieldStrength=3000)})
    return ["--dry-run"]


def c_field_strength_mT(plan, stderr):
    assert "MagneticFieldStrength 3000 is outside" in stderr
    out = plan["outputs"][0]
    assert out["prompt_fields"]["field_strength"] is None  # the target prompt uses the source's field strength
    assert "Scanner: None Siemens" in out["prompt"]


def b_flip_400(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": dict(T1, FlipAngle=400, Manufacturer=7)})
    return ["--dry-run"]


def c_flip_400(plan, stderr):
    assert "FlipAngle 400 is outside the plausible range 0.01-180 degrees" in stderr
    assert "Manufacturer is 7, not text" in stderr
    assert plan["outputs"][0]["source_prompt_fields"]["vendor"] is None


def b_inherited_ms(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": None},
         top_sidecars={"T1w.json": dict(T1, RepetitionTime=2300, InversionTime=900)})
    return ["--dry-run"]


def c_inherited_ms(plan, stderr):
    assert "sub-01_T1w.nii.gz (inherited sidecar): RepetitionTime 2300" in stderr
    assert "InversionTime 900 is outside" in stderr


def b_missing_sidecar(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": None})
    return ["--dry-run"]


def c_missing_sidecar(plan, stderr):
    assert re.search(r"warning: \S*sub-01_T1w.nii.gz: no sidecar with acquisition metadata", stderr)
    out = plan["outputs"][0]
    assert "Scanner: None None" in out["prompt"]
    assert any("no sidecar" in note for note in out["notes"])


def b_null_values(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": dict(T1, InversionTime=None)})
    return ["--dry-run"]


def c_null_values(plan, stderr):
    assert "warning" not in stderr
    assert plan["outputs"][0]["source_prompt_fields"]["ti_ms"] is None


def b_plausible(root):
    base(root)
    return ["--dry-run"]


def c_plausible(plan, stderr):
    assert "warning" not in stderr and plan["warnings"] == []
    assert plan["outputs"][0]["source_prompt_fields"]["tr_ms"] == pytest.approx(2300)


def b_fractional_age(root):
    base(root, participants="participant_id\tage\tsex\nsub-01\t45.5\tF\n")
    return ["--dry-run"]


def c_fractional_age(plan, stderr):
    assert plan["outputs"][0]["prompt"].startswith("Age: 45; Gender: F;")


def b_bom_crlf_tsv(root):
    base(root, participants="participant_id\tage\tsex\nsub-01\t61.9\tM\n", bom=True, crlf=True)
    return ["--dry-run"]


def c_bom_crlf_tsv(plan, stderr):
    assert plan["outputs"][0]["prompt"].startswith("Age: 61; Gender: M;")


def b_duplicate_runs(root):
    base(root, images={f"sub-01/anat/sub-01_run-{r}_T1w.nii.gz": T1 for r in (2, 1, 10)})
    return ["--dry-run"]


def c_duplicate_runs(plan, stderr):
    out = plan["outputs"][0]
    assert out["source_path"].endswith("sub-01_run-1_T1w.nii.gz")
    assert any("3 T1w candidates" in r and "sub-01_run-2_T1w.nii.gz" in r and "sub-01_run-10_T1w.nii.gz" in r
               for r in out["reasons"])


def b_annexed(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": T1, "sub-01/anat/sub-01_T2w.nii.gz": fx.EYETRACKING_T2W})
    H.annex(root)
    return ["--dry-run", "--target", "FLAIR"]


def c_annexed(plan, stderr):
    out = plan["outputs"][0]
    assert out["source_path"].endswith("sub-01/anat/sub-01_T1w.nii.gz") and ".git" not in out["source_path"]
    assert out["source_entities"]["subject"] == "01"


def b_partly_fetched(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": T1, "sub-01/anat/sub-01_T2w.nii.gz": fx.EYETRACKING_T2W})
    save(root / "sub-01/anat/sub-01_T2w.nii.gz", blob(scale=500))  # other content: another annex key
    H.annex(root, names_absent=("sub-01_T1w.nii.gz",))
    return ["--dry-run"]


def c_partly_fetched(plan, stderr):
    assert "sub-01_T1w.nii.gz: dangling symlink" in stderr and "datalad get sub-01_T1w.nii.gz" in stderr
    out = plan["outputs"][0]
    assert out["source_path"].endswith("sub-01_T2w.nii.gz")  # passed over to the next candidate


def b_oblique_las(root):
    base(root)
    rot = np.array([[-np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), -np.cos(0.3), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 2.5])
    save(image_of(root), blob(), affine)
    return ["--dry-run"]


def c_oblique_las(plan, stderr):
    assert plan["outputs"][0]["source_voxel_size"] == pytest.approx([0.9, 1.1, 2.5])


def b_partial_nan(root):
    base(root)
    data = blob(dtype=np.float32)
    data[0] = np.nan
    save(image_of(root), data)
    return ["--dry-run"]


def c_ok(plan, stderr):
    assert len(plan["outputs"]) == 1 and plan["failed"] == {}


def b_negative_intensities(root):
    base(root)
    save(image_of(root), blob(dtype=np.float32) - 5000.0)
    return ["--dry-run"]


def b_uint8_scaled(root):
    base(root)
    save(image_of(root), blob(dtype=np.uint8, scale=250), scl_slope=0.0, scl_inter=0.0)
    return ["--dry-run"]


def b_float64_big_voxels(root):
    base(root)
    save(image_of(root), blob(dtype=np.float64), np.diag([20.0, 20.0, 20.0, 1.0]))
    return ["--dry-run"]


def b_uncompressed_and_gz(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii": T1})
    return ["--dry-run"]


def b_empty_session(root):
    base(root, images={"sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": T1})
    (root / "sub-01/ses-2/anat").mkdir(parents=True)
    return ["--dry-run"]


def b_one_bad_session(root):
    base(root, images={"sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": T1,
                       "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz": T1})
    save(root / "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz", np.zeros(SHAPE, np.int16))
    return ["--dry-run"]


def c_one_bad_session(plan, stderr):
    assert len(plan["outputs"]) == 1 and list(plan["failed"]) == ["sub-01_ses-2"]
    assert "sub-01_ses-2_T1w.nii.gz: image is all zeros" in plan["failed"]["sub-01_ses-2"]


def b_sub_prefix_label(root):
    base(root)
    return ["--dry-run", "--participant-label", "sub-01"]


def b_skip_existing(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": T1, "sub-01/anat/sub-01_T2w.nii.gz": fx.EYETRACKING_T2W})
    return ["--skip-existing"]


def b_bom_sidecar(root):
    base(root)
    sidecar = root / "sub-01/anat/sub-01_T1w.json"
    sidecar.write_bytes(b"\xef\xbb\xbf" + sidecar.read_bytes())
    return []


def b_huge_header_small_file(root):
    base(root)
    path = image_of(root)
    header = nb.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))
    header.set_data_dtype(np.int16)
    header.set_zooms((0.1, 0.1, 0.1))
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\x00" * 4 + np.ones(1000, np.int16).tobytes()
    path.write_bytes(gzip.compress(raw))
    return []


def b_nifti2(root):
    base(root)
    nb.save(nb.Nifti2Image(blob(), np.eye(4)), str(image_of(root)))
    return ["--dry-run"]


def b_multi_echo_list(root):
    base(root, images={"sub-01/anat/sub-01_T1w.nii.gz": dict(T1, EchoTime=[0.002, 0.004, 0.006])})
    return ["--dry-run"]


def c_multi_echo_list(plan, stderr):
    assert "warning" not in stderr
    assert plan["outputs"][0]["source_prompt_fields"]["te_ms"] == pytest.approx(2.0)


def b_unknown_target(root):
    base(root)
    return ["--target", "T3w"]


def b_zero_voxel_option(root):
    base(root)
    return ["--voxel", "0", "1", "1"]


# --- geometry: broken sform/qform are repaired with a warning naming the file, or refused ---------


def save_raw(path: Path, data: np.ndarray, edit: Callable[[nb.Nifti1Header], None]) -> Path:
    """Write a .nii.gz with exactly the header ``edit`` leaves (nibabel's save would refresh sform/qform).

    The starting header has 2 mm voxels and a matching RAS sform and qform (both code 1)."""
    header = nb.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(data.dtype)
    header.set_zooms((2.0, 2.0, 2.0))
    header.set_sform(GEO_AFFINE, code=1)
    header.set_qform(GEO_AFFINE, code=1)
    edit(header)
    raw = io.BytesIO()
    header.write_to(raw)
    raw.write(b"\0" * (int(header.get_data_offset()) - raw.tell()))
    raw.write(np.asarray(data).tobytes(order="F"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


GEO_AFFINE = np.array([[2.0, 0, 0, -15], [0, 2.0, 0, -15], [0, 0, 2.0, -15], [0, 0, 0, 1]])


def geometry_case(edit):
    def build(root):
        base(root)
        save_raw(image_of(root), blob(), edit)
        return ["--dry-run"]

    return build


def _no_xforms(h):
    h["sform_code"], h["qform_code"] = 0, 0


def _singular_sform(h):
    h.set_sform(np.diag([0.0, 0.0, 0.0, 1.0]), code=1)


def _singular_sform_only(h):
    _singular_sform(h)
    h["qform_code"] = 0


def _nan_sform_nan_qform(h):
    h["srow_x"] = [np.nan] * 4
    h["qoffset_x"] = np.nan


def _flipped_qform(h):
    flipped = GEO_AFFINE.copy()
    flipped[0, 0], flipped[0, 3] = -2.0, 15.0
    h.set_qform(flipped, code=1)


def _shifted_qform(h):
    shifted = GEO_AFFINE.copy()
    shifted[:3, 3] += (30.0, 0.0, 0.0)
    h.set_qform(shifted, code=1)


def _sheared(h, keep_qform):
    sheared = GEO_AFFINE.copy()
    sheared[0, 1] = 0.5  # 14 degrees between the first two voxel axes: ITK/antspyx cannot read it
    h.set_sform(sheared, code=1)
    if not keep_qform:
        h["qform_code"] = 0


def _bad_quaternion_beside_sform(h):
    h["quatern_b"] = 1.5


def _bad_quaternion_only(h):
    h["quatern_b"] = 1.5
    h["sform_code"] = 0


def _pixdim_differs(h):
    h["pixdim"][1:4] = 1.0  # the sform says 2 mm


def _qfac_zero(h):
    h["pixdim"][0] = 0.0  # read as 1 (the NIfTI rule): not a repair


def _nan_pixdim_no_xforms(h):
    _no_xforms(h)
    h["pixdim"][2] = np.nan


def _oblique_pair(h):
    rot = np.array([[np.cos(0.4), -np.sin(0.4), 0], [np.sin(0.4), np.cos(0.4), 0], [0, 0, 1]])
    oblique = GEO_AFFINE.copy()
    oblique[:3, :3] = rot @ np.diag([2.0, 2.0, 2.0])
    h.set_sform(oblique, code=1)
    h.set_qform(oblique, code=1)


def geometry_check(needle: str | None, voxel=(2.0, 2.0, 2.0)):
    """The plan notes the repair, stderr warns once naming the file (or, for None, says nothing)."""

    def check(plan, stderr):
        out = plan["outputs"][0]
        assert out["source_voxel_size"] == pytest.approx(list(voxel), abs=1e-3)
        if needle is None:
            assert "warning" not in stderr and plan["warnings"] == [], stderr
            return
        pattern = r"^tumsyn-bids: warning: \S+sub-01/anat/sub-01_T1w.nii.gz: " + needle
        assert len(re.findall(pattern, stderr, re.M)) == 1, stderr
        assert any(re.search(needle, note) for note in out["notes"]), out["notes"]

    return check


# --- the table ----------------------------------------------------------------------------------


@dataclass
class Case:
    build: Callable[[Path], list]
    code: int
    last: str  # regex the last stderr line must match (search)
    check: Callable[[dict, str], None] | None = None
    notes: dict = field(default_factory=dict)


E = r"^tumsyn-bids: error: "
CASES: dict[str, Case] = {
    # validation (16) and usage (64)
    "no_description": Case(b_no_description, 16, E + r"\S+dataset_description.json: missing"),
    "description_not_json": Case(b_description_not_json, 16, E + r"\S+dataset_description.json: not valid JSON"),
    "description_no_version": Case(b_description_no_version, 16, E + r".*lacks required field.*BIDSVersion"),
    "sidecar_not_json": Case(b_sidecar_not_json, 16, E + r"\S+sub-01_T1w.json: sidecar is not valid JSON"),
    "sidecar_not_json_skip_validation": Case(b_sidecar_not_json_skip, 65, E + r"\S+sub-01_T1w.json: sidecar is not valid JSON"),
    "missing_bids_dir": Case(b_missing_bids_dir, 64, E + r"\S+: BIDS_DIR does not exist"),
    "unknown_label": Case(b_unknown_label, 64, E + r".*not in the dataset: sub-07"),
    "malformed_filter_file": Case(b_malformed_filter, 64, E + r"\S+filter.json: "),
    "unknown_option": Case(b_unknown_option, 64, E + r".*no-such-option"),
    "workdir_inside_bids": Case(b_workdir_inside, 64, E + r"\S+/work: the work directory must not be inside BIDS_DIR"),
    "output_under_a_file": Case(b_output_blocked, 73, E + r"\S+blocker/out: cannot create OUTPUT_DIR"),
    # nothing to do (66 / 0)
    "only_func": Case(b_only_func, 66, E + r"\S+bids: nothing to synthesize for sub-01 \(T2w: no usable source image\)"),
    "lowercase_suffix": Case(b_wrong_suffix_case, 66, E + r"\S+bids: nothing to synthesize for sub-01"),
    "not_a_bids_name": Case(b_not_bids_name, 66, E + r"\S+bids: nothing to synthesize for sub-01"),
    "skip_existing_all_present": Case(b_skip_existing, 0, r"^tumsyn-bids: every requested target already exists"),
    # unusable images (65): one line naming the file
    "truncated_gz": Case(b_truncated_gz, 65, E + r"\S+sub-01_T1w.nii.gz: truncated: [1-9]\d* of \d+ bytes"),
    "truncated_nii": Case(b_truncated_nii, 65, E + r"\S+sub-01_T1w.nii: truncated: 1000 of 8544 bytes"),
    "corrupt_gz": Case(b_corrupt_gz, 65, E + r"\S+sub-01_T1w.nii.gz: (corrupt compressed data|truncated): \d+ of \d+ bytes"),
    "empty_file": Case(b_empty_file, 65, E + r"\S+sub-01_T1w.nii.gz: not a readable NIfTI image"),
    "text_file": Case(b_text_file, 65, E + r"\S+sub-01_T1w.nii.gz: not a readable NIfTI image"),
    "rgb": Case(b_rgb, 65, E + r"\S+sub-01_T1w.nii.gz: colour image \(NIfTI datatype RGB24\)"),
    "complex": Case(b_complex, 65, E + r"\S+sub-01_T1w.nii.gz: complex-valued image \(complex64\)"),
    "all_nan": Case(b_all_nan, 65, E + r"\S+sub-01_T1w.nii.gz: image has no finite values"),
    "all_zero": Case(b_all_zero, 65, E + r"\S+sub-01_T1w.nii.gz: image is all zeros"),
    "constant": Case(b_constant, 65, E + r"\S+sub-01_T1w.nii.gz: image is constant \(every finite voxel is 7\)"),
    "4d": Case(b_4d, 65, E + r"\S+sub-01_T1w.nii.gz: 4D image with 3 volumes"),
    "one_slice": Case(b_one_slice, 65, E + r"\S+sub-01_T1w.nii.gz: image is too small"),
    "zero_voxel_size": Case(b_zero_voxel_size, 65, E + r"\S+sub-01_T1w.nii.gz: voxel sizes .* are not positive"),
    "dangling_annex_link": Case(b_dangling_annex, 65, E + r"\S+sub-01_T1w.nii.gz: dangling symlink.*datalad get sub-01_T1w.nii.gz"),
    "every_participant_unusable": Case(b_all_sources_unreadable_two_participants, 65,
                                       E + r"\S+sub-01_T1w.nii.gz: image is all zeros.*\(and 1 more\)"),
    # weights (64 for a missing path, 65 for an unreadable file); planning runs first
    "weights_missing": Case(b_weights_missing, 64, E + r"\S+nope.pt: --weights: no such file or folder"),
    "weights_pair_part_missing": Case(b_weights_pair_missing_part, 64, E + r"\S+b.pth: --weights: no such file or folder"),
    "weights_random_bytes": Case(b_weights_random, 65, E + r"\S+random.pt: cannot read checkpoint"),
    "weights_text": Case(b_weights_text, 65, E + r"\S+notes.pt: cannot read checkpoint"),
    "weights_dir_without_files": Case(b_weights_empty_dir, 65, E + r"\S+wdir: no .pt/.pth weights files in this folder"),
    # awkward but usable: planned (dry run), warnings where metadata is implausible
    "tr_in_milliseconds": Case(b_tr_in_ms, 0, r"", c_tr_in_ms),
    "strings_in_sidecar": Case(b_strings_in_sidecar, 0, r"", c_strings_in_sidecar),
    "negative_echo_time": Case(b_negative_te, 0, r"", c_negative_te),
    "field_strength_in_mT": Case(b_field_strength_mT, 0, r"", c_field_strength_mT),
    "flip_angle_400_vendor_number": Case(b_flip_400, 0, r"", c_flip_400),
    "inherited_sidecar_in_ms": Case(b_inherited_ms, 0, r"", c_inherited_ms),
    "missing_sidecar": Case(b_missing_sidecar, 0, r"", c_missing_sidecar),
    "json_null_values": Case(b_null_values, 0, r"", c_null_values),
    "plausible_sidecar": Case(b_plausible, 0, r"", c_plausible),
    "fractional_age": Case(b_fractional_age, 0, r"", c_fractional_age),
    "bom_crlf_participants": Case(b_bom_crlf_tsv, 0, r"", c_bom_crlf_tsv),
    "duplicate_runs": Case(b_duplicate_runs, 0, r"", c_duplicate_runs),
    "annexed_dataset": Case(b_annexed, 0, r"", c_annexed),
    "partly_fetched_annex": Case(b_partly_fetched, 0, r"", c_partly_fetched),
    "oblique_las": Case(b_oblique_las, 0, r"", c_oblique_las),
    "some_nan_voxels": Case(b_partial_nan, 0, r"", c_ok),
    "negative_intensities": Case(b_negative_intensities, 0, r"", c_ok),
    "uint8_slope_zero": Case(b_uint8_scaled, 0, r"", c_ok),
    "float64_20mm_voxels": Case(b_float64_big_voxels, 0, r"", c_ok),
    "uncompressed_nii": Case(b_uncompressed_and_gz, 0, r"", c_ok),
    "session_without_images": Case(b_empty_session, 0, r"", c_ok),
    "one_unusable_session": Case(b_one_bad_session, 0, r"", c_one_bad_session),
    "sub_prefixed_label": Case(b_sub_prefix_label, 0, r"", c_ok),
    "bom_in_sidecar": Case(b_bom_sidecar, 65, E + r"\S+sub-01_T1w.json: sidecar starts with a UTF-8 byte-order mark"),
    "nifti2": Case(b_nifti2, 0, r"", c_ok),
    "multi_echo_list": Case(b_multi_echo_list, 0, r"", c_multi_echo_list),
    "huge_header_small_file": Case(b_huge_header_small_file, 65,
                                   E + r"\S+sub-01_T1w.nii.gz: truncated: 2352 of 16000000352 bytes"),
    "unknown_target": Case(b_unknown_target, 64, E + r"--target: .*T3w"),
    # geometry (README "Geometry"): repaired with a warning + plan note (sidecar: tests/anat), or refused (65)
    "geometry_no_sform_no_qform": Case(geometry_case(_no_xforms), 0, r"", geometry_check(
        r"no sform or qform \(both codes 0\): orientation unknown; assumed 2 x 2 x 2 mm voxels in LAS axis order")),
    "geometry_singular_sform_with_qform": Case(geometry_case(_singular_sform), 0, r"", geometry_check(
        r"sform \(code 1\) is unusable \(singular matrix\): used the qform \(RAS\)")),
    "geometry_singular_sform_only": Case(geometry_case(_singular_sform_only), 0, r"", geometry_check(
        r"sform unusable \(singular matrix\) and no qform: orientation unknown; assumed 2 x 2 x 2 mm")),
    "geometry_nan_sform_and_qform": Case(geometry_case(_nan_sform_nan_qform), 0, r"", geometry_check(
        r"sform unusable \(non-finite values\) and qform unusable \(non-finite values\): orientation unknown")),
    "geometry_sform_qform_flipped": Case(geometry_case(_flipped_qform), 0, r"", geometry_check(
        r"sform and qform disagree \(corners up to \d+ mm apart; sform RAS, qform LAS\): used the sform")),
    "geometry_sform_qform_shifted": Case(geometry_case(_shifted_qform), 0, r"", geometry_check(
        r"sform and qform disagree \(corners up to 30 mm apart; both RAS\): used the sform")),
    "geometry_sheared_sform_no_qform": Case(geometry_case(lambda h: _sheared(h, False)), 0, r"", geometry_check(
        r"sform is sheared \(14 degrees .*no usable qform: used its nearest rotation", voxel=(2.0, 2.0616, 2.0))),
    "geometry_sheared_sform_with_qform": Case(geometry_case(lambda h: _sheared(h, True)), 0, r"", geometry_check(
        r"sform is sheared \(14 degrees between voxel axes, unreadable for ANTs\): used the qform instead")),
    "geometry_bad_quaternion_beside_sform": Case(geometry_case(_bad_quaternion_beside_sform), 0, r"", geometry_check(
        r"qform \(code 1\) is unusable \(invalid quaternion\): ignored, used the sform")),
    "geometry_pixdim_differs_from_sform": Case(geometry_case(_pixdim_differs), 0, r"", geometry_check(
        r"voxel sizes in pixdim \(1 x 1 x 1 mm\) differ from the sform's \(2 x 2 x 2 mm\): used the sform's")),
    "geometry_qfac_zero": Case(geometry_case(_qfac_zero), 0, r"", geometry_check(None)),
    "geometry_oblique_sform_equals_qform": Case(geometry_case(_oblique_pair), 0, r"", geometry_check(None)),
    "geometry_impossible_quaternion_only": Case(geometry_case(_bad_quaternion_only), 65, E + r"\S+sub-01_T1w.nii.gz: "
                                                r"qform \(code 1\) holds an impossible quaternion .* no usable sform"),
    "geometry_nan_voxel_size_no_xforms": Case(geometry_case(_nan_pixdim_no_xforms), 65,
                                              E + r"\S+sub-01_T1w.nii.gz: voxel sizes .* are not positive"),
    "zero_voxel_option": Case(b_zero_voxel_option, 64, E + r"--voxel"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name, tmp_path, robust_run):
    case = CASES[name]
    bids = tmp_path / "bids"
    args = [str(a) for a in case.build(bids)]
    out = None
    if args == ["--output-blocked"]:
        args, out = [], tmp_path / "blocker" / "out"
    if not bids.exists():  # the missing-BIDS_DIR case: nothing to checksum
        bids.mkdir()
        bids.rmdir()
        result = H.run_cli(bids, tmp_path / "out", "participant", *args, cwd=tmp_path, env=H.cli_env())
        work = tmp_path / "work"
    else:
        result, _, work = robust_run(bids, *args, out=out)
    assert result.code == case.code, f"exit {result.code}\n{result.stderr[-3000:]}"
    H.assert_clean_console(result)
    if case.last:
        assert re.search(case.last, result.last_line), result.last_line
    if case.code != 0:
        assert result.last_line.startswith("tumsyn-bids: ") and "\n" not in result.last_line
    if case.check is not None:
        case.check(plan_of(work), result.stderr)
