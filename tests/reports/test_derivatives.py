"""Derivative names, sidecars, dataset_description.json and atomic writes."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from tumsyn_bids import __version__
from tumsyn_bids.bids import derivatives as bd


@pytest.mark.parametrize("source, target, expected", [
    ("sub-01/ses-1/anat/sub-01_ses-1_acq-mprage_rec-norm_run-2_T1w.nii.gz", "T2w",
     "sub-01/ses-1/anat/sub-01_ses-1_run-2_desc-tumsyn_T2w.nii.gz"),
    ("sub-01/anat/sub-01_task-rest_echo-1_part-mag_T1w.nii.gz", "FLAIR", "sub-01/anat/sub-01_desc-tumsyn_FLAIR.nii.gz"),
    ("sub-02/anat/sub-02_T2w.nii", "PDw", "sub-02/anat/sub-02_desc-tumsyn_PDw.nii.gz"),
    ("sub-02/anat/sub-02_T1w.nii.gz", "SWI", "sub-02/anat/sub-02_desc-tumsynSWI_T2starw.nii.gz"),
    ("sub-02/anat/sub-02_run-1_T1w.nii.gz", "T1CE", "sub-02/anat/sub-02_ce-gadolinium_run-1_desc-tumsyn_T1w.nii.gz"),
])
def test_synthetic_names(source, target, expected):
    assert bd.synthetic_relpath(source, target).as_posix() == expected


def test_mask_transform_and_space_names():
    src = "sub-01/ses-1/anat/sub-01_ses-1_acq-x_run-1_T1w.nii.gz"
    assert bd.mask_relpath(src).as_posix() == "sub-01/ses-1/anat/sub-01_ses-1_run-1_desc-brain_mask.nii.gz"
    assert bd.mask_relpath("sub-01/anat/sub-01_FLAIR.nii.gz").name == "sub-01_desc-brainFLAIR_mask.nii.gz"
    assert bd.xfm_relpath(src, "MNI152NLin2009cAsym").name == \
        "sub-01_ses-1_run-1_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.h5"
    assert bd.synthetic_relpath(src, "T2w", space="MNI152NLin2009cAsym", res="2").name == \
        "sub-01_ses-1_run-1_space-MNI152NLin2009cAsym_res-2_desc-tumsyn_T2w.nii.gz"
    assert bd.sidecar_path("a/sub-01_desc-tumsyn_T2w.nii.gz") == Path("a/sub-01_desc-tumsyn_T2w.json")
    with pytest.raises(ValueError):
        bd.parse_entities("T1w.nii.gz")


def test_sidecar_nests_source_acquisition_and_uses_bids_uris():
    sidecar = bd.synthetic_sidecar(
        target="T2w", source_relpath="sub-01/anat/sub-01_T1w.nii.gz", source_suffix="T1w",
        mask_relpath="sub-01/anat/sub-01_desc-brain_mask.nii.gz", prompt="p", conditioning={"Modality": "T2w"},
        model_name="m", weights_sha256="abc", device="cpu", voxel_size=(1, 1, 1.25), skull_strip_method="deepbet",
        masked_output=False, source_metadata={"RepetitionTime": 2.3, "EchoTime": 0.002, "TaskName": "x"},
        qc={"masked": {"psnr": 20.0}},
    )
    assert sidecar["SkullStripped"] is True
    assert sidecar["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz",
                                  "bids::sub-01/anat/sub-01_desc-brain_mask.nii.gz"]
    assert "RepetitionTime" not in sidecar and sidecar["SourceAcquisition"] == {"RepetitionTime": 2.3,
                                                                                "EchoTime": 0.002}
    assert sidecar["VoxelSize"] == [1.0, 1.0, 1.25] and sidecar["QC"]["masked"]["psnr"] == 20.0


def test_up_to_date_needs_same_prompt_model_and_weights(tmp_path):
    image = tmp_path / "sub-01_desc-tumsyn_T2w.nii.gz"
    assert not bd.is_up_to_date(image, prompt="p", model_name="m", weights_sha256="s")
    image.write_bytes(b"x")
    bd.atomic_write_json(bd.sidecar_path(image), {"Prompt": "p", "ModelName": "m", "ModelWeightsSHA256": "s",
                                                  "MaskedOutput": False})
    assert bd.is_up_to_date(image, prompt="p", model_name="m", weights_sha256="s", masked_output=False)
    assert bd.is_up_to_date(image, prompt="p", model_name=None, weights_sha256="s")
    assert not bd.is_up_to_date(image, prompt="q", model_name="m", weights_sha256="s")
    assert not bd.is_up_to_date(image, prompt="p", model_name="m", weights_sha256="t")
    assert not bd.is_up_to_date(image, prompt="p", model_name="m", weights_sha256="s", masked_output=True)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out" / "file.nii.gz"
    bd.atomic_write_text(target, "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        bd.atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.nii.gz"]


def test_dataset_description_and_container(tmp_path, monkeypatch, caplog):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "raw", "License": "CC0",
                                                               "DatasetDOI": "10.1/x"}))
    monkeypatch.setenv("TUMSYN_CONTAINER_TAG", "tumsyn/tumsyn-bids:0.1.0")
    monkeypatch.delenv("APPTAINER_CONTAINER", raising=False)
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)
    out = tmp_path / "out"
    bd.write_dataset_files(out, bids)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["License"] == "CC0"
    assert desc["GeneratedBy"][0] == {**desc["GeneratedBy"][0], "Name": "tumsyn", "Version": __version__,
                                      "Container": {"Type": "docker", "Tag": "tumsyn/tumsyn-bids:0.1.0"}}
    assert desc["DatasetLinks"]["raw"] == bids.resolve().as_uri()
    assert desc["SourceDatasets"][0]["DOI"] == "10.1/x"
    assert "sub-*/log" in (out / ".bidsignore").read_text().splitlines()
    assert bd.container_info({"APPTAINER_CONTAINER": "/x.sif"}) == {"Type": "apptainer", "URI": "/x.sif"}
    # another version wrote this folder before: warn
    desc["GeneratedBy"][0]["Version"] = "0.0.1"
    (out / "dataset_description.json").write_text(json.dumps(desc))
    assert bd.previous_version(out) == "0.0.1"
    with caplog.at_level("WARNING", logger="tumsyn.derivatives"):
        bd.write_dataset_files(out, bids)
    assert "0.0.1" in caplog.text
    assert bd.previous_version(out) is None


def _hammer(args) -> int:
    out, bids, n = args
    for _ in range(n):
        bd.write_dataset_files(out, bids)
    return n


def test_concurrent_writers_never_expose_a_partial_description(tmp_path):
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    bd.write_dataset_files(out, bids)
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        pending = pool.map_async(_hammer, [(out, bids, 40)] * 3)
        reads = 0
        while not pending.ready() or reads < 50:
            json.loads((out / "dataset_description.json").read_text())  # always whole
            reads += 1
        assert pending.get(timeout=120) == [40, 40, 40]
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
