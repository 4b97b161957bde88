"""`tumsyn simulate`: a valid, reproducible BIDS dataset with ground truth."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from tumsyn_bids.cli.tools import _register, app

_register()
ARGS = ["--subjects", "2", "--sessions", "2,1", "--extra", "1:2=T2w", "--voxel", "6", "--seed", "3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "ds"
    result = CliRunner().invoke(app, ["simulate", str(out), *ARGS])
    assert result.exit_code == 0, result.output
    return out


def test_layout_sidecars_and_participants(dataset):
    from bids import BIDSLayout

    layout = BIDSLayout(dataset, validate=True)
    assert sorted(layout.get_subjects()) == ["01", "02"]
    assert sorted(layout.get_sessions(subject="01")) == ["1", "2"]
    t1 = layout.get(suffix="T1w", extension=".nii.gz")
    assert len(t1) == 3
    t2 = layout.get(suffix="T2w", extension=".nii.gz")
    assert [f.entities["session"] for f in t2] == ["2"]
    meta = t2[0].get_metadata()
    assert meta["RepetitionTime"] == pytest.approx(3.2) and meta["EchoTime"] == pytest.approx(0.563)
    assert meta["MagneticFieldStrength"] == 3.0 and meta["Manufacturer"] == "Siemens"
    assert "Modality: T2w" in meta["TumsynPrompt"]
    t1_meta = json.loads((dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.json").read_text())
    assert t1_meta["InversionTime"] == pytest.approx(0.9) and t1_meta["FlipAngle"] == 9.0
    rows = (dataset / "participants.tsv").read_text().splitlines()
    assert rows[0] == "participant_id\tage\tsex" and len(rows) == 3
    assert json.loads((dataset / "dataset_description.json").read_text())["DatasetType"] == "raw"
    img = nib.load(dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
    assert img.header.get_zooms() == (6.0, 6.0, 6.0) and img.get_data_dtype() == np.int16


def test_ground_truth_derivative_matches_raw_grid(dataset):
    gt = dataset / "derivatives" / "groundtruth"
    desc = json.loads((gt / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"]
    raw = nib.load(dataset / "sub-01/ses-2/anat/sub-01_ses-2_T2w.nii.gz")
    truth = nib.load(gt / "sub-01/ses-2/anat/sub-01_ses-2_desc-noisefree_T2w.nii.gz")
    mask = nib.load(gt / "sub-01/ses-2/anat/sub-01_ses-2_desc-brain_mask.nii.gz")
    np.testing.assert_allclose(raw.affine, truth.affine)
    np.testing.assert_allclose(raw.affine, mask.affine)
    r, t, m = raw.get_fdata(), truth.get_fdata(), mask.get_fdata() > 0
    assert 0.1 < m.mean() < 0.7
    # raw = truth x bias + noise: strongly correlated inside the brain, but not equal
    assert np.corrcoef(r[m], t[m])[0, 1] > 0.5 and not np.array_equal(r, t)
    # sessions of one subject have different head poses
    other = nib.load(gt / "sub-01/ses-1/anat/sub-01_ses-1_desc-brain_mask.nii.gz").get_fdata() > 0
    assert other.shape != m.shape or (other != m).any()


def test_same_seed_gives_identical_files(dataset, tmp_path):
    again = tmp_path / "again"
    result = CliRunner().invoke(app, ["simulate", str(again), *ARGS])
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (dataset / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert not list(dataset.rglob(".*tmp"))  # no temporary files left


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--contrasts", "T5w"], "unknown contrast"),
        (["--voxel", "0"], "--voxel"),
        (["--extra", "9:1=T2w"], "--extra"),
        (["--thick-slice", "q:5"], "--thick-slice"),
        (["--phantom", "labelmap"], "--labelmap"),
    ],
)
def test_bad_options_exit_64_with_one_line(tmp_path, argv, needle):
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "x"), *argv])
    assert result.exit_code == 64
    assert needle in result.output and len(result.output.strip().splitlines()) == 1


def test_labelmap_phantom_with_thick_slices_and_skull_strip(tmp_path):
    from .conftest import sphere_labels

    labels, affine = sphere_labels(16)
    seg = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), seg)
    out = tmp_path / "lm"
    result = CliRunner().invoke(app, ["simulate", str(out), "--subjects", "1", "--phantom", "labelmap",
                                      "--labelmap", str(seg), "--contrasts", "T1w,FLAIR", "--voxel", "2",
                                      "--thick-slice", "z:6", "--skull-strip", "--field-strength", "1.5"])
    assert result.exit_code == 0, result.output
    img = nib.load(out / "sub-01/anat/sub-01_FLAIR.nii.gz")
    assert img.header.get_zooms() == (2.0, 2.0, 6.0)
    meta = json.loads((out / "sub-01/anat/sub-01_FLAIR.json").read_text())
    assert meta["MRAcquisitionType"] == "2D" and meta["SliceThickness"] == 6.0 and meta["SkullStripped"] is True
    assert meta["MagneticFieldStrength"] == 1.5 and meta["InversionTime"] == pytest.approx(2.2)
    mask = nib.load(out / "derivatives/groundtruth/sub-01/anat/sub-01_desc-brain_mask.nii.gz").get_fdata() > 0
    assert (img.get_fdata()[~mask] == 0).all()
