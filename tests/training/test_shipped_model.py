"""Prompt sensitivity of the shipped tumsyn-small weights on a small simulated head.

The same skull-stripped T1w input, different target prompts: T2w spin echo at TE 60-140 ms (TR
fixed) must give a CSF/WM ratio that rises with TE and follows the signal equation's prediction
(Pearson r >= 0.95); FLAIR must give dark ventricles where T2w gives bright ones; the T1w prompt
must give white matter brighter than grey matter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tumsyn_bids.models.loading import bundled_weights_path

from .conftest import sphere_head

WEIGHTS = bundled_weights_path("tumsyn-small")


def head_labels() -> np.ndarray:
    return sphere_head(n=48, voxel=1.0)[0]


@pytest.fixture(scope="module")
def head():
    from scipy.ndimage import binary_erosion

    from tumsyn_bids.physics.phantoms import labelmap_phantom
    from tumsyn_bids.physics.simulate import simulate_subject

    labels = head_labels()
    _, affine = sphere_head(n=48, voxel=1.0)
    phantom = labelmap_phantom(labels, affine, source="sphere")
    sim = simulate_subject(phantom, ["T1w"], np.random.default_rng(7), field_strength=3.0, deform=False,
                           crop=False, skull_strip=True, snr=60.0, bias=False)["T1w"]
    assert sim.data.shape == labels.shape
    vent = binary_erosion(np.isin(labels, (4, 43)), iterations=1)
    from scipy.ndimage import binary_dilation

    wm = binary_erosion(labels == 2, iterations=2) & ~binary_dilation(np.isin(labels, (4, 43)), iterations=3)
    return sim, vent, wm


@pytest.fixture(scope="module")
def bundle():
    from tumsyn_bids.models.loading import load_model

    torch.set_num_threads(1)
    return load_model("tumsyn-small")


def _ratio(bundle, sim, vent, wm, **prompt_fields) -> float:
    from tumsyn_bids.inference.engine import synthesize
    from tumsyn_bids.prompts import Prompt

    prompt = Prompt(voxel_size=(1.0, 1.0, 1.0), age=sim.prompt.age, sex=sim.prompt.sex, field_strength=3.0,
                    vendor="Siemens", **prompt_fields)
    out = synthesize(sim.data, sim.affine, prompt, bundle, device="cpu", progress=False,
                     source_prompt=sim.prompt).data
    return float(out[vent].mean() / out[wm].mean())


def test_record_sits_next_to_the_weights(bundle):
    record = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert record["sha256"] == bundle.sha256
    assert bundle.spec["input"] == "skull-stripped"
    assert set(record["data_recipe"]["held_out"]) >= {"synthseg_training_seg_15", "synthsr_brain5"}


def test_shipped_files_name_no_local_paths(bundle):
    """The record and the checkpoint spec keep label maps by name, never the trainer's folders."""
    from tumsyn_bids.training.ship import portable_config

    record_text = WEIGHTS.with_suffix(".json").read_text()
    spec_text = json.dumps(bundle.spec, default=str)
    for text in (record_text, spec_text):
        assert '"/' not in text, "an absolute path was shipped"
    assert portable_config({"data": {"labelmaps": ["/somewhere/maps", "x/seg_01.nii.gz"]}}) == {
        "data": {"labelmaps": ["maps", "seg_01.nii.gz"]}}


def _physics_ratio(te: float, tr: float = 5000.0) -> float:
    """CSF/WM signal ratio of a 3 T spin echo at the population-mean tissue values."""
    from tumsyn_bids.physics.signals import spin_echo
    from tumsyn_bids.physics.tissues import TissueClass, nominal_tissue_properties

    p = nominal_tissue_properties([TissueClass("csf", "csf"), TissueClass("wm", "wm")], 3.0)
    s = spin_echo(p.pd, p.t1, p.t2, tr, te)
    return float(s[0] / s[1])


def test_csf_wm_ratio_rises_with_te_as_the_signal_equation_says(bundle, head):
    sim, vent, wm = head
    tes = (60.0, 80.0, 100.0, 120.0, 140.0)
    ratios = [_ratio(bundle, sim, vent, wm, modality="T2w", tr_ms=5000.0, te_ms=te, flip_angle=90.0) for te in tes]
    assert all(a < b for a, b in zip(ratios, ratios[1:], strict=False)), ratios
    expected = [_physics_ratio(te) for te in tes]
    r = float(np.corrcoef(ratios, expected)[0, 1])
    assert r >= 0.95, (r, ratios, expected)


def test_flair_ventricles_dark_t2w_bright(bundle, head):
    sim, vent, wm = head
    t2 = _ratio(bundle, sim, vent, wm, modality="T2w", tr_ms=5000.0, te_ms=100.0, flip_angle=90.0)
    flair = _ratio(bundle, sim, vent, wm, modality="FLAIR", tr_ms=9000.0, te_ms=90.0, ti_ms=2500.0,
                   flip_angle=150.0)
    assert t2 > 1.0 > flair, (t2, flair)


def test_flair_ventricles_much_darker_than_white_matter(bundle, head):
    """What the app renders by default (the network's maps read against the source by inference.refine):
    FLAIR ventricles well below WM, as the signal equation says (~0.1). The network's maps alone give
    0.59 here (under-estimated ventricular CSF T1 after 1097 H200 steps)."""
    from tumsyn_bids.inference.refine import synthesize_refined
    from tumsyn_bids.prompts import Prompt

    sim, vent, wm = head
    prompt = Prompt(modality="FLAIR", voxel_size=(1.0, 1.0, 1.0), age=sim.prompt.age, sex=sim.prompt.sex,
                    field_strength=3.0, vendor="Siemens", tr_ms=9000.0, te_ms=90.0, ti_ms=2500.0, flip_angle=150.0)
    result, _, info = synthesize_refined(sim.data, sim.affine, sim.data > 0, prompt, bundle,
                                         source_prompt=sim.prompt, device="cpu", progress=False)
    assert info["refined"]
    flair = float(result.data[vent].mean() / result.data[wm].mean())
    assert flair < 0.5, flair
    network_only = _ratio(bundle, sim, vent, wm, modality="FLAIR", tr_ms=9000.0, te_ms=90.0, ti_ms=2500.0,
                          flip_angle=150.0)
    assert flair < network_only


def test_t1w_white_matter_brighter_than_grey_matter(bundle, head):
    from tumsyn_bids.inference.engine import synthesize
    from tumsyn_bids.prompts import Prompt

    sim, vent, wm = head
    labels = head_labels()
    from scipy.ndimage import binary_erosion

    gm = binary_erosion(labels == 3, iterations=1)
    prompt = Prompt(modality="T1w", voxel_size=(1.0, 1.0, 1.0), age=40, sex="F", field_strength=3.0,
                    vendor="Siemens", tr_ms=2300.0, te_ms=2.3, ti_ms=900.0, flip_angle=9.0)
    out = synthesize(sim.data, sim.affine, prompt, bundle, device="cpu", progress=False,
                     source_prompt=sim.prompt).data
    assert out[wm].mean() > 1.1 * out[gm].mean() > out[vent].mean(), (out[wm].mean(), out[gm].mean())


def test_target_prompt_orders_ventricle_contrast(bundle, head):
    """Same T1w input: the 3D T2w (SPACE) prompt gives ventricles brighter than WM, the FLAIR prompt
    darker, and the T1w prompt darker than the T2w one."""
    sim, vent, wm = head
    t2 = _ratio(bundle, sim, vent, wm, modality="T2w", tr_ms=3200.0, te_ms=563.0, flip_angle="T2var")
    flair = _ratio(bundle, sim, vent, wm, modality="FLAIR", tr_ms=9000.0, te_ms=90.0, ti_ms=2500.0,
                   flip_angle=150.0)
    t1 = _ratio(bundle, sim, vent, wm, modality="T1w", tr_ms=2300.0, te_ms=2.3, ti_ms=900.0, flip_angle=9.0)
    assert t2 > 1.0 > flair and t2 > t1, (t2, flair, t1)


def test_shipped_file_is_small_and_safe():
    obj = torch.load(WEIGHTS, weights_only=True)
    assert WEIGHTS.stat().st_size < 30 * 1024 * 1024
    assert obj["spec"]["synthesis"]["name"] == "physics-unet"
