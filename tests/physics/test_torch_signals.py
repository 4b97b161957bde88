"""The torch signal equations equal the numpy reference and are differentiable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tumsyn_bids.physics import signals as np_sig
from tumsyn_bids.physics import torch_signals as th_sig
from tumsyn_bids.physics.render import tissue_signals
from tumsyn_bids.physics.tissues import TissueClass, nominal_tissue_properties
from tumsyn_bids.protocols import Protocol, all_protocols

RNG = np.random.default_rng(0)
PD = RNG.uniform(0.5, 1.0, 64)
T1 = RNG.uniform(250, 4500, 64)
T2 = RNG.uniform(30, 2000, 64)
T2S = T2 * RNG.uniform(0.3, 1.0, 64)


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("protocol", all_protocols(), ids=lambda p: f"{p.contrast}-{p.field_strength}")
def test_every_default_protocol_matches_numpy(protocol):
    ref = np_sig.sequence_signal(protocol, PD, T1, T2, T2S)
    got = th_sig.sequence_signal(protocol, _t(PD), _t(T1), _t(T2), _t(T2S)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("protocol", [
    Protocol("T1w", "se", 3.0, 500.0, 12.0, None, 90.0),
    Protocol("T2w", "se", 1.5, 4000.0, 120.0, None, 90.0),
    Protocol("T1w", "gre", 3.0, 20.0, 4.0, None, 25.0),
    Protocol("FLAIR", "ir", 1.5, 11000.0, 140.0, 2800.0, 150.0),
    Protocol("T1w", "mprage", 1.5, 1900.0, 3.0, 700.0, 12.0),
    Protocol("T2w", "space", 3.0, 2500.0, 400.0, None, "T2var"),
], ids=lambda p: f"{p.sequence}-{p.tr_ms}")
def test_other_timings_match_numpy(protocol):
    ref = np_sig.sequence_signal(protocol, PD, T1, T2, T2S)
    got = th_sig.sequence_signal(protocol, _t(PD), _t(T1), _t(T2), _t(T2S)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("contrast", ["T1CE", "SWI", "T2w"])
def test_render_maps_matches_the_class_renderer(contrast):
    """T1CE (gadolinium T1 shortening) and SWI (phase-mask weight) as physics/render.py does them."""
    classes = [TissueClass(k, k) for k in ("wm", "gm", "csf", "vessel", "choroid_plexus", "pallidum")]
    props = nominal_tissue_properties(classes, 3.0)
    from tumsyn_bids.protocols import default_protocol

    protocol = default_protocol(contrast, 3.0)
    ref = tissue_signals(props, protocol, contrast)
    gd_r1 = props.gd_relaxivity * props.gd_mm / 1000.0
    got = th_sig.render_maps(protocol, _t(props.pd), _t(props.t1), _t(props.t2), _t(props.t2s),
                             gd_r1=_t(gd_r1), susceptibility=_t(props.susceptibility), contrast=contrast).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    if contrast == "T1CE":  # enhancement really happened where gadolinium is
        plain = th_sig.sequence_signal(protocol, _t(props.pd), _t(props.t1), _t(props.t2), _t(props.t2s)).numpy()
        assert got[3] > plain[3] * 1.2 and got[0] == pytest.approx(plain[0])


def test_gradients_flow_to_every_tissue_parameter():
    protocol = Protocol("FLAIR", "ir", 3.0, 9000.0, 90.0, 2500.0, 150.0)
    params = [torch.tensor([0.8, 0.7], requires_grad=True), torch.tensor([1500.0, 900.0], requires_grad=True),
              torch.tensor([100.0, 80.0], requires_grad=True), torch.tensor([60.0, 50.0], requires_grad=True)]
    th_sig.sequence_signal(protocol, *params).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in params[:3])


def test_invalid_protocol_is_refused_as_in_numpy():
    with pytest.raises(np_sig.PhysicsParameterError, match="TI"):
        th_sig.sequence_signal(Protocol("FLAIR", "ir", 3.0, 2000.0, 90.0, 2500.0, 150.0), *map(_t, (PD, T1, T2, T2S)))
