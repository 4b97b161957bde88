"""Brain masks on simulated heads: detection, deepbet, T1w-mask transfer, template fallback."""

from __future__ import annotations

import json
import re
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


def test_t1w_mask_carried_rigidly_onto_the_t2w(head, tmp_path):
    paths, truth = head
    t1_mask = tmp_path / "t1mask.nii.gz"
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), nib.load(str(paths["T1w"])).affine), str(t1_mask))
    mask, detail = bm._run_method(bm.T1W_TRANSFER, paths["T2w"], paths["T1w"], t1_mask, tmp_path)
    assert "sub-01_T1w.nii.gz registered rigidly" in detail
    assert dice(mask, truth) > 0.9


def test_whole_head_t2w_without_t1w_is_masked_by_the_best_method_and_passes_qc(head, tmp_path):
    paths, truth = head
    assert bm.candidate_methods("T2w", have_t1w=True) == bm.METHOD_ORDER["T2w"]
    assert bm.candidate_methods("T2w", have_t1w=False) == tuple(m for m in bm.METHOD_ORDER["T2w"]
                                                                if m != bm.T1W_TRANSFER)
    result = bm.compute_mask(paths["T2w"], tmp_path / "m.nii.gz", mode="auto", suffix="T2w")
    assert result.method == bm.candidate_methods("T2w", have_t1w=False)[0] == bm.DEEPBET_INVERTED
    mask = np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj) > 0
    assert dice(mask, truth) > 0.85, dice(mask, truth)
    assert result.qc["Warning"] is None and result.qc["Rejected"] == []
    assert result.qc["Method"] == result.method and result.qc["VolumeML"] == pytest.approx(result.volume_ml, abs=0.1)


def test_template_registration_of_a_stripped_image(head, tmp_path, monkeypatch):
    paths, truth = head
    monkeypatch.delenv("TEMPLATEFLOW_HOME", raising=False)
    monkeypatch.setenv("TUMSYN_CACHE", str(tmp_path / "cache"))
    mask, detail = bm._run_method(bm.TEMPLATE, paths["stripped"], None, None, tmp_path)
    assert "nilearn" in detail
    assert dice(mask, truth) > 0.75


# --- mask QC ----------------------------------------------------------------------------------


def test_mask_qc_passes_the_true_mask_and_flags_head_sized_or_misplaced_masks(head):
    paths, truth = head
    data = np.asarray(nib.load(str(paths["T2w"])).dataobj, dtype=np.float32)
    zooms = (VOXEL,) * 3
    good = bm.mask_qc(truth, data, zooms, "x")
    assert good["Warning"] is None and good["InsideSupport"] > 0.98
    assert 0.3 < good["SupportDice"] < 0.75  # a brain inside a whole head
    assert set(good) >= {"Method", "VolumeML", "SupportDice", "Warning"}
    head_mask = bm.image_support(data)
    assert head_mask.sum() > 1.5 * truth.sum() and (head_mask & truth).sum() > 0.98 * truth.sum()
    big = bm.mask_qc(head_mask, data, zooms, "template")
    assert big["SupportDice"] == pytest.approx(1.0) and big["VolumeML"] > 2500
    assert re.fullmatch(r"brain mask \(template\) looks wrong: volume \d+ mL is outside the plausible 700-2500 mL",
                        big["Warning"]), big["Warning"]
    spill = truth.copy()  # a brain-sized mask with a fifth of it in the air around the head
    spill.flat[np.flatnonzero(~head_mask)[: int(0.25 * truth.sum())]] = True
    off = bm.mask_qc(spill, data, zooms, "deepbet")
    assert off["InsideSupport"] == pytest.approx(0.8, abs=0.01) and off["VolumeML"] < 2500
    assert off["Warning"] == "brain mask (deepbet) looks wrong: 20% of it lies outside the image's signal"
    tiny = bm.mask_qc(truth & (np.indices(truth.shape)[0] < 6), data, zooms, "deepbet")
    assert "is outside the plausible" in tiny["Warning"]


def test_stripped_image_support_is_its_foreground(head):
    paths, truth = head
    data = np.asarray(nib.load(str(paths["stripped"])).dataobj, dtype=np.float32)
    qc = bm.mask_qc(bm.nonzero_mask(data), data, (VOXEL,) * 3, bm.ALREADY)
    assert qc["SupportDice"] > 0.99 and qc["Warning"] is None


def test_a_mask_failing_qc_moves_on_to_the_next_method_and_records_it(head, tmp_path, monkeypatch):
    paths, truth = head
    data = np.asarray(nib.load(str(paths["T2w"])).dataobj, dtype=np.float32)
    calls = []

    def fake(method, in_file, t1w_file, t1w_mask, work_dir):
        calls.append(method)
        return (bm.image_support(data) if len(calls) == 1 else truth), f"fake {method}"

    monkeypatch.setattr(bm, "_run_method", fake)
    result = bm.compute_mask(paths["T2w"], tmp_path / "m.nii.gz", mode="on", suffix="T2w")
    order = bm.candidate_methods("T2w", have_t1w=False)
    assert calls == list(order[:2]) and result.method == order[1] and result.qc["Warning"] is None
    assert [r["Method"] for r in result.qc["Rejected"]] == [order[0]]
    assert "outside the plausible" in result.qc["Rejected"][0]["Warning"]


def test_when_every_method_fails_qc_the_best_is_kept_with_its_warning(head, tmp_path, monkeypatch, caplog):
    paths, _ = head
    data = np.asarray(nib.load(str(paths["T2w"])).dataobj, dtype=np.float32)
    monkeypatch.setattr(bm, "_run_method", lambda method, *a: (bm.image_support(data), f"fake {method}"))
    result = bm.compute_mask(paths["T2w"], tmp_path / "m.nii.gz", mode="on", suffix="T2w")
    order = bm.candidate_methods("T2w", have_t1w=False)
    assert result.method == order[0] and "looks wrong" in result.qc["Warning"]
    assert [r["Method"] for r in result.qc["Rejected"]] == list(order[1:])
    assert any("looks wrong" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_mask_sidecar_records_mask_qc_and_the_runner_line_names_the_mask(head, tmp_path):
    from tumsyn_bids.anat.outputs import mask_qc_warnings, write_mask

    paths, truth = head
    bids = tmp_path / "bids"
    src = bids / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    src.parent.mkdir(parents=True)
    src.write_bytes(paths["T2w"].read_bytes())
    data = np.asarray(nib.load(str(src)).dataobj, dtype=np.float32)
    mask_file = tmp_path / "m.nii.gz"
    big = bm.image_support(data)
    nib.save(nib.Nifti1Image(big.astype(np.uint8), nib.load(str(src)).affine), str(mask_file))
    qc = dict(bm.mask_qc(big, data, (VOXEL,) * 3, bm.TEMPLATE), Rejected=[])
    written = write_mask(tmp_path / "out", bids, src, mask_file, {"method": bm.TEMPLATE, "detail": "d",
                                                                  "volume_ml": qc["VolumeML"], "qc": qc})
    sidecar = json.loads(written.with_name(written.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["MaskQC"]["Method"] == bm.TEMPLATE and sidecar["MaskQC"]["Warning"] == qc["Warning"]
    assert sidecar["MaskQC"]["VolumeML"] > 2300 and 0 < sidecar["MaskQC"]["SupportDice"] <= 1
    lines = mask_qc_warnings(tmp_path / "out", bids, [src, src])  # two targets of one source: one line
    assert lines == [f"{written}: {qc['Warning']} (source sub-01_T2w.nii.gz; synthesis used it)"]


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
