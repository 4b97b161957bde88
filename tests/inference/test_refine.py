"""Physics-consistency refinement (inference.refine): the source re-read along the tissue relation.

A small spherical brain (WM core, GM shell, CSF ventricle) with the path's own tissue values is
rendered as a T1-weighted spin echo; the "network" maps handed to the refinement are either the truth
or flattened (grey and white matter given the same values), and the T2w target rendered from the
refinement is compared with the T2w of the truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tumsyn_bids.inference.refine import (
    path_points,
    refine,
    source_protocol_for_refinement,
    state_signals,
    tissue_path,
)
from tumsyn_bids.physics.torch_signals import render_maps
from tumsyn_bids.protocols import Protocol

T1_SE = Protocol("T1w", "se", 3.0, 550.0, 12.0, None, 90.0)
T2_SE = Protocol("T2w", "se", 3.0, 5000.0, 100.0, None, 90.0)
FLAIR = Protocol("FLAIR", "ir", 3.0, 9000.0, 110.0, 2500.0, 150.0)


def _phantom(n: int = 28):
    idx = np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2
    r = np.sqrt((idx**2).sum(0)) / (n / 2)
    labels = np.zeros((n, n, n), np.int64)
    labels[r < 0.85] = 2  # GM shell
    labels[r < 0.6] = 1  # WM
    labels[r < 0.2] = 3  # CSF
    return torch.from_numpy(labels)


def _maps(labels: torch.Tensor, params: torch.Tensor) -> dict[str, torch.Tensor]:
    """Maps of a label volume from (4, 4) rows [air, WM, GM, CSF] of log PD, T1, T2, T2*."""
    p = torch.exp(params)[labels]
    inside = (labels > 0).float()
    maps = {k: p[..., i] * (inside if k == "PD" else 1.0) for i, k in enumerate(("PD", "T1", "T2", "T2star"))}
    maps["GdR1"] = torch.zeros_like(maps["PD"])
    maps["Susceptibility"] = torch.zeros_like(maps["PD"])
    return maps


def _render(maps, protocol):
    return render_maps(protocol, maps["PD"], maps["T1"], maps["T2"], maps["T2star"], contrast=protocol.contrast)


@pytest.fixture(scope="module")
def brain():
    labels = _phantom()
    anchors = tissue_path(3.0)
    truth = _maps(labels, torch.cat([anchors[:1], anchors]))
    source = _render(truth, T1_SE)
    source = source / source[labels > 0].max()  # the engine's normalisation scale
    return labels, anchors, truth, source, labels > 0


def _corr(a, b, mask):
    return float(np.corrcoef(a[mask].numpy(), b[mask].numpy())[0, 1])


def test_refinement_restores_the_grey_white_contrast_a_flat_network_lost(brain):
    labels, anchors, truth, source, mask = brain
    flat_rows = torch.stack([anchors[0], (anchors[0] + anchors[1]) / 2, (anchors[0] + anchors[1]) / 2, anchors[2]])
    flat = _maps(labels, flat_rows)
    want = _render(truth, T2_SE)
    before = _render(flat, T2_SE)
    target, maps, summary = refine(flat, source, mask, T1_SE, "T1w", T2_SE, "T2w")
    gm, wm = (labels == 2), (labels == 1)
    assert float(before[gm].mean() / before[wm].mean()) == pytest.approx(1.0, abs=1e-4)  # flat in
    # most of the contrast comes back (the prior around the flat network's position keeps a little)
    assert float(target[gm].mean() / target[wm].mean()) == pytest.approx(float(want[gm].mean() / want[wm].mean()),
                                                                         rel=0.15)
    assert _corr(target, want, mask) > 0.98 > 0.8 > _corr(before, want, mask)
    assert summary["mismatch_after"] < 0.5 * summary["mismatch_before"]
    # the maps move along the path too: WM T1 back below GM T1
    assert float(maps["T1"][wm].median()) < 0.9 * float(maps["T1"][gm].median())


def test_refinement_leaves_maps_that_already_explain_the_source(brain):
    labels, anchors, truth, source, mask = brain
    want = _render(truth, FLAIR)
    target, maps, summary = refine(truth, source, mask, T1_SE, "T1w", FLAIR, "FLAIR")
    rel = (target - want)[mask].abs().mean() / want[mask].abs().mean()
    assert float(rel) < 0.08  # the posterior spreads over neighbouring states: a few per cent
    assert summary["mean_shift"] < 0.2
    assert torch.allclose(maps["T1"][mask], truth["T1"][mask], rtol=0.15)


def test_refinement_touches_nothing_outside_the_mask(brain):
    labels, anchors, truth, source, mask = brain
    inner = labels == 1
    target, maps, _ = refine(truth, source, inner, T1_SE, "T1w", T2_SE, "T2w")
    outside = mask & ~inner
    assert torch.equal(target[outside], _render(truth, T2_SE)[outside])
    assert torch.equal(maps["T2"][outside], truth["T2"][outside])


def test_states_mix_partial_volume_as_signals_do():
    anchors = tissue_path(3.0)
    t = torch.tensor([0.0, 0.5, 1.0, 1.25, 2.0])
    sig = state_signals(anchors, t, T2_SE, "T2w")
    wm, gm, csf = state_signals(anchors, torch.tensor([0.0, 1.0, 2.0]), T2_SE, "T2w")
    assert float(sig[1]) == pytest.approx(float((wm + gm) / 2), rel=1e-5)
    assert float(sig[3]) == pytest.approx(float(0.75 * gm + 0.25 * csf), rel=1e-5)
    assert torch.allclose(path_points(anchors, torch.tensor([2.0]))[0], anchors[2])
    assert float(csf) > float(gm) > float(wm)  # T2w order at the anchors


def test_source_protocol_fills_the_tr_its_weighting_needs():
    t1 = ("Age: 40; Gender: F; Scanner: 3.0 Siemens; Modality: T1w; Voxel size: (1.0, 1.0, 1.0); "
          "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (None, 12.0, None, None)")
    protocol, contrast, note = source_protocol_for_refinement(t1)
    assert (contrast, protocol.sequence, protocol.tr_ms, protocol.te_ms) == ("T1w", "se", 550.0, 12.0)
    assert "TR 550" in note
    assert source_protocol_for_refinement(None) is None


def test_engine_returns_every_map_in_one_pass_equal_to_one_map_at_a_time():
    from tumsyn_bids.inference.engine import synthesize
    from tumsyn_bids.models.loading import make_random_bundle
    from tumsyn_bids.models.physics_net import ALL_MAPS, MAP_NAMES

    torch.set_num_threads(1)
    bundle = make_random_bundle("tumsyn-small", seed=3)
    image = np.random.default_rng(0).random((20, 18, 16)).astype(np.float32)
    prompt = ("Age: 40; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (1.5, 1.5, 1.5); "
              "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (5000.0, 100.0, None, 90.0)")
    kw = dict(voxel_size=(1.5, 1.5, 1.5), device="cpu", progress=False, window=16)
    both = synthesize(image, np.eye(4), prompt, bundle, tissue_map=ALL_MAPS, **kw)
    assert both.data.shape[-1] == len(MAP_NAMES)
    for name in ("T1", "T2"):
        one = synthesize(image, np.eye(4), prompt, bundle, tissue_map=name, **kw)
        assert one.data.shape == both.data.shape[:3]
        np.testing.assert_allclose(both.data[..., MAP_NAMES.index(name)], one.data, rtol=1e-4, atol=1e-4)


def test_a_second_source_resolves_what_one_leaves_ambiguous(brain):
    from tumsyn_bids.inference.refine import SourceEvidence

    labels, anchors, truth, _, mask = brain
    gm_everywhere = _maps(labels, torch.stack([anchors[0], anchors[1], anchors[1], anchors[1]]))

    def normalised(protocol):
        img = _render(truth, protocol)
        return img / img[mask].max()

    flair = SourceEvidence(normalised(FLAIR), FLAIR, "FLAIR")
    t2 = SourceEvidence(normalised(T2_SE), T2_SE, "T2w")
    want = _render(truth, T1_SE)
    one, _, s1 = refine(gm_everywhere, [flair], mask, None, "", T1_SE, "T1w")
    two, _, s2 = refine(gm_everywhere, [flair, t2], mask, None, "", T1_SE, "T1w")
    csf = labels == 3
    assert (s1["sources"], s2["sources"]) == (1.0, 2.0)
    # FLAIR alone: dark CSF reads as the dark side of the path near WM; with the T2w it is CSF
    err_one = float((one - want)[csf].abs().mean() / want[csf].abs().mean())
    err_two = float((two - want)[csf].abs().mean() / want[csf].abs().mean())
    assert err_two < 0.5 * err_one
    assert _corr(two, want, mask) > _corr(one, want, mask)
