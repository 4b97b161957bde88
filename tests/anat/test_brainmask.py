"""Brain masks on simulated heads: detection, deepbet, T1w-mask transfer, template fallback."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat import brainmask as bm

VOXEL = 4.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A simulated whole-head T1w + T2w pair (4 mm) and the true brain mask."""
    import torch

    from tumsyn_bids.physics.phantoms import mni_phantom
    from tumsyn_bids.physics.simulate import simulate_subject

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("head")
    sim = simulate_subject(mni_phantom(VOXEL), ["T1w", "T2w"], np.random.default_rng(3), voxel_size=VOXEL)
    paths = {}
    for contrast, image in sim.items():
        paths[contrast] = root / f"sub-01_{contrast}.nii.gz"
        nib.save(nib.Nifti1Image(image.data, image.affine), str(paths[contrast]))
    stripped = root / "sub-01_desc-stripped_T1w.nii.gz"
    nib.save(nib.Nifti1Image(sim["T1w"].data * sim["T1w"].mask, sim["T1w"].affine), str(stripped))
    paths["stripped"] = stripped
    return paths, sim["T1w"].mask


def test_detects_stripped_but_not_whole_head(head):
    paths, _ = head
    whole = np.asarray(nib.load(str(paths["T1w"])).dataobj)
    stripped = np.asarray(nib.load(str(paths["stripped"])).dataobj)
    assert bm.looks_skull_stripped(stripped, (VOXEL,) * 3)
    assert not bm.looks_skull_stripped(whole, (VOXEL,) * 3)
    # a noise-free head with an exactly zero background is still too big to be a brain
    head_only = np.where(whole > np.percentile(whole, 60), whole, 0)
    assert not bm.looks_skull_stripped(head_only, (VOXEL,) * 3)


def test_auto_uses_the_foreground_of_a_stripped_image(head, tmp_path):
    paths, truth = head
    result = bm.compute_mask(paths["stripped"], tmp_path / "m.nii.gz", mode="auto", suffix="T1w")
    assert result.method == bm.ALREADY
    mask = np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj) > 0
    assert dice(mask, truth) > 0.95


def test_deepbet_on_a_whole_head_t1w(head, tmp_path):
    paths, truth = head
    result = bm.compute_mask(paths["T1w"], tmp_path / "m.nii.gz", mode="auto", suffix="T1w")
    assert result.method == bm.DEEPBET
    mask = np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj) > 0
    assert dice(mask, truth) > 0.8, dice(mask, truth)
    assert 800 < result.volume_ml < 2300


def test_t2w_source_gets_the_t1w_mask_by_rigid_registration(head, tmp_path):
    paths, truth = head
    t1_mask = tmp_path / "t1mask.nii.gz"
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), nib.load(str(paths["T1w"])).affine), str(t1_mask))
    result = bm.compute_mask(paths["T2w"], tmp_path / "m.nii.gz", mode="on", suffix="T2w",
                             t1w_file=paths["T1w"], t1w_mask=t1_mask)
    assert result.method == bm.T1W_TRANSFER
    mask = np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj) > 0
    assert dice(mask, truth) > 0.9


def test_template_fallback_without_t1w(head, tmp_path, monkeypatch):
    paths, truth = head
    monkeypatch.delenv("TEMPLATEFLOW_HOME", raising=False)
    monkeypatch.setenv("TUMSYN_CACHE", str(tmp_path / "cache"))
    result = bm.compute_mask(paths["stripped"], tmp_path / "m.nii.gz", mode="on", suffix="T2w")
    assert result.method == bm.TEMPLATE and "nilearn" in result.detail
    mask = np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj) > 0
    assert dice(mask, truth) > 0.75


def test_template_space_copy_and_transform(head, tmp_path, monkeypatch):
    from tumsyn_bids.anat.outputs import write_template_copy
    from tumsyn_bids.anat.template import template_image, to_template

    paths, truth = head
    monkeypatch.delenv("TEMPLATEFLOW_HOME", raising=False)
    monkeypatch.setenv("TUMSYN_CACHE", str(tmp_path / "cache"))
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), nib.load(str(paths["T1w"])).affine), str(mask))
    # carry the true brain mask along: it must land on the template's brain
    info = to_template(paths["T1w"], mask, mask, tmp_path / "mni.nii.gz", tmp_path / "x.h5", res=4)
    assert "nilearn" in info["TemplateSource"] and "4x4x4" in info["Resolution"]
    moved = nib.load(str(tmp_path / "mni.nii.gz"))
    assert np.allclose(moved.header.get_zooms()[:3], 4.0) and nib.aff2axcodes(moved.affine) == ("R", "A", "S")
    assert moved.header.get_sform(coded=True)[1] == 4  # standard space
    from nilearn.image import resample_to_img

    tpl_mask = resample_to_img(str(template_image(4)[1]), moved, interpolation="nearest",
                               force_resample=True, copy_header=True).get_fdata() > 0
    assert dice(np.asarray(moved.dataobj) > 0.5, tpl_mask) > 0.8
    bids = paths["T1w"].parent
    written = write_template_copy(out_dir=tmp_path / "out", bids_dir=bids, source_file=paths["T1w"], target="T2w",
                                  space="MNI152NLin2009cAsym:res-4", image=tmp_path / "mni.nii.gz",
                                  xfm=tmp_path / "x.h5", info=info, synth_sidecar={"Prompt": "p", "QC": {}})
    assert Path(written["image"]).name == "sub-01_space-MNI152NLin2009cAsym_res-4_desc-tumsyn_T2w.nii.gz"
    assert Path(written["xfm"]).name == "sub-01_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.h5"
    sidecar = json.loads(Path(written["sidecar"]).read_text())
    assert sidecar["Resolution"] == info["Resolution"] and sidecar["Prompt"] == "p" and "QC" not in sidecar
