"""The nipype interfaces run the plain functions and expose their results."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.interfaces.anat import BrainMask, Conform
from tumsyn_bids.interfaces.synthesis import Synthesize

AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


def _brain(shape=(16, 18, 14)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    return np.where(r < 0.8, 100 + 40 * np.cos(5 * r), 0).astype(np.float32)


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(_brain(), AFFINE), str(path))
    return path


def test_conform_and_brainmask_interfaces(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conformed = Conform(in_file=str(source)).run()
    assert conformed.outputs.report["orientation"] == "RAS"
    masked = BrainMask(in_file=conformed.outputs.out_file, mode="auto", suffix="T1w").run()
    assert masked.outputs.info["method"] == "already-skull-stripped"
    mask = np.asarray(nib.load(masked.outputs.out_file).dataobj)
    assert mask.dtype == np.uint8 and mask.sum() == int((_brain() > 0).sum())


def test_synthesize_interface_declares_gpu_and_writes_the_output_grid(source, tmp_path, monkeypatch):
    import torch

    from tumsyn_bids.models.checkpoint import save_native
    from tumsyn_bids.models.loading import make_random_bundle

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    bundle = make_random_bundle("tumsyn-small", seed=1)
    weights = tmp_path / "w.pt"
    save_native(weights, bundle.spec, bundle.text_encoder, bundle.net)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((_brain() > 0).astype(np.uint8), AFFINE), str(mask))
    iface = Synthesize(in_file=str(source), mask_file=str(mask), weights=str(weights), device="cpu",
                       prompt="Age: 30; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (8.0, 8.0, 8.0); "
                              "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)",
                       voxel_size=[8.0, 8.0, 8.0])
    assert "use_gpu" in iface.inputs.copyable_trait_names() and iface.inputs.use_gpu is False
    result = iface.run()
    out = nib.load(result.outputs.out_file)
    assert out.shape == (8, 9, 7) and np.allclose(out.header.get_zooms()[:3], 8.0)
    info = result.outputs.info
    assert info["device"] == "cpu" and info["model_name"] == "tumsyn-small" and len(info["sha256"]) == 64
    assert np.isfinite(np.asarray(out.dataobj)).all()
