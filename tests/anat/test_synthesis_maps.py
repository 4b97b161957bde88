"""--save-maps at the plain-function level: synthesize_file predicts the tissue maps, write_synthetic
writes them as labelled BIDS derivatives (random-weight tumsyn-small on a tiny volume)."""

from __future__ import annotations

import json
from dataclasses import asdict

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.conform import conform
from tumsyn_bids.anat.outputs import write_synthetic
from tumsyn_bids.anat.synthesis import synthesize_file
from tumsyn_bids.bids import derivatives as bd
from tumsyn_bids.reports.collect import synthetic_outputs

LAS = np.array([[-8.0, 0, 0, 40], [0, 8.0, 0, -40], [0, 0, 8.0, -30], [0, 0, 0, 1]])
PROMPT = ("Age: 30; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (8.0, 8.0, 8.0); "
          "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)")
MAP_KEYS = {"Units", "Description", "ModelEstimate", "EstimationAlgorithm", "Sources", "TissueMap",
            "TargetContrast", "Prompt", "ModelName", "ModelWeightsSHA256", "SoftwareVersion", "Device",
            "VoxelSize", "SkullStripped", "MaskedOutput"}


def _brain(shape=(12, 14, 10)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    return np.where(r < 0.8, 100 + 40 * np.cos(5 * r), 0).astype(np.float32)


def test_maps_are_predicted_and_written_as_labelled_estimates(tmp_path, random_checkpoint):
    import torch

    from tumsyn_bids.models.physics_net import MAP_NAMES

    torch.set_num_threads(1)
    assert set(bd.TISSUE_MAPS) < set(MAP_NAMES)
    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    src = bids / "sub-01" / "ses-a" / "anat" / "sub-01_ses-a_run-2_T1w.nii.gz"
    src.parent.mkdir(parents=True)
    work.mkdir()
    nib.save(nib.Nifti1Image(_brain(), LAS), str(src))
    conform(src, work / "c.nii.gz")
    ras = nib.load(str(work / "c.nii.gz"))
    nib.save(nib.Nifti1Image((np.asarray(ras.dataobj) > 0).astype(np.uint8), ras.affine), str(work / "mask.nii.gz"))

    info = synthesize_file(work / "c.nii.gz", work / "mask.nii.gz", PROMPT, work / "synth.nii.gz",
                           weights=str(random_checkpoint), device="cpu", voxel_size=(8.0, 8.0, 8.0),
                           tissue_maps=("PD", "T1", "T2", "T2star", "GdR1"))
    assert sorted(info.maps) == ["GdR1", "PD", "T1", "T2", "T2star"]
    synth = nib.load(info.out_file)
    for path in info.maps.values():  # same grid as the synthetic image
        img = nib.load(path)
        assert img.shape == synth.shape and np.allclose(img.affine, synth.affine)

    written = write_synthetic(
        out_dir=out, bids_dir=bids, source_file=src, synth_file=info.out_file, mask_file=work / "mask.nii.gz",
        target="T2w", prompt=PROMPT, synthesis=asdict(info),
        mask_info={"method": "already-skull-stripped", "detail": "test", "volume_ml": 1.0},
        source_metadata={}, conditioning={"Modality": "T2w"},
    )
    anat = out / "sub-01" / "ses-a" / "anat"
    image = nib.load(str(anat / "sub-01_ses-a_run-2_desc-tumsyn_T2w.nii.gz"))
    names = {"T1": "T1map", "T2": "T2map", "T2star": "T2starmap", "PD": "PDmap"}
    for name, suffix in names.items():
        path = anat / f"sub-01_ses-a_run-2_desc-tumsynT2w_{suffix}.nii.gz"
        assert written[f"map_{name}"] == str(path) and path.is_file()
        img = nib.load(str(path))
        assert img.shape == image.shape and np.allclose(img.affine, image.affine)  # the image's grid and orientation
        assert nib.aff2axcodes(img.affine) == ("L", "A", "S") and img.get_data_dtype() == np.float32
        sidecar = json.loads(bd.sidecar_path(path).read_text())
        assert MAP_KEYS <= set(sidecar)
        assert sidecar["ModelEstimate"] is True and "not a measurement" in sidecar["Description"]
        assert "tumsyn-small" in sidecar["Description"] and sidecar["ModelName"] == "tumsyn-small"
        assert sidecar["ModelWeightsSHA256"] == info.sha256 and len(info.sha256) == 64
        assert sidecar["Sources"] == ["bids:raw:sub-01/ses-a/anat/sub-01_ses-a_run-2_T1w.nii.gz",
                                      "bids::sub-01/ses-a/anat/sub-01_ses-a_run-2_desc-brain_mask.nii.gz"]
        assert sidecar["TissueMap"] == name and sidecar["Prompt"] == PROMPT
        assert sidecar["Units"] == ("arbitrary (CSF = 1)" if name == "PD" else "ms")
        assert bd.is_up_to_date(path, prompt=PROMPT, model_name="tumsyn-small", weights_sha256=info.sha256,
                                masked_output=False)
    assert not list(anat.glob("*GdR1*")) and not list(anat.glob("*Susceptibility*"))  # no BIDS suffix
    t1 = np.asarray(nib.load(str(anat / "sub-01_ses-a_run-2_desc-tumsynT2w_T1map.nii.gz")).dataobj)
    brain = np.asarray(image.dataobj) != 0
    assert np.isfinite(t1).all() and 20.0 < np.median(t1[brain]) < 20000.0  # milliseconds, not seconds
    # the maps accompany the synthetic image; the reports do not count them as outputs
    assert [r.suffix for r in synthetic_outputs(out)] == ["T2w"]


def test_map_names_keep_apart_the_targets_of_one_session():
    t2 = bd.map_relpath("sub-01/anat/sub-01_T1w.nii.gz", "T2w", "T1")
    flair = bd.map_relpath("sub-01/anat/sub-01_T1w.nii.gz", "FLAIR", "T1")
    assert t2.as_posix() == "sub-01/anat/sub-01_desc-tumsynT2w_T1map.nii.gz"
    assert flair.name == "sub-01_desc-tumsynFLAIR_T1map.nii.gz"
    swi = bd.map_relpath("sub-01/anat/sub-01_T1w.nii.gz", "SWI", "T2star")
    assert swi.name == "sub-01_desc-tumsynSWI_T2starmap.nii.gz"
    with pytest.raises(ValueError):
        bd.map_relpath("sub-01/anat/sub-01_T1w.nii.gz", "T2w", "GdR1")


def test_synthesize_file_refuses_maps_of_a_model_without_them(tmp_path):
    import torch

    from tumsyn_bids.anat import synthesis
    from tumsyn_bids.errors import UsageError
    from tumsyn_bids.models.loading import make_random_bundle

    torch.set_num_threads(1)
    bundle = make_random_bundle("lccd-small", seed=0)
    assert not synthesis.predicts_tissue_maps(bundle)
    assert synthesis.predicts_tissue_maps(make_random_bundle("tumsyn-small", seed=0))
    synthesis._BUNDLES[("lccd-small", "", "cpu")] = bundle
    try:
        path = tmp_path / "x.nii.gz"
        nib.save(nib.Nifti1Image(_brain(), np.eye(4)), str(path))
        with pytest.raises(UsageError, match="does not predict tissue maps"):
            synthesize_file(path, path, PROMPT, tmp_path / "s.nii.gz", model="lccd-small", device="cpu",
                            tissue_maps=("T1",))
        assert not (tmp_path / "s.nii.gz").exists()
    finally:
        synthesis._BUNDLES.pop(("lccd-small", "", "cpu"), None)
