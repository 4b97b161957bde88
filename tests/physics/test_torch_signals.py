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
    numpy_route = np_sig.contrast_signal(protocol, props.pd, props.t1, props.t2, props.t2s, gd_r1=gd_r1,
                                         susceptibility=props.susceptibility, contrast=contrast)
    np.testing.assert_allclose(numpy_route, ref, rtol=1e-12)  # the shared T1CE/SWI step, numpy equations
    if contrast == "T1CE":  # enhancement really happened where gadolinium is
        plain = th_sig.sequence_signal(protocol, _t(props.pd), _t(props.t1), _t(props.t2), _t(props.t2s)).numpy()
        assert got[3] > plain[3] * 1.2 and got[0] == pytest.approx(plain[0])


# Which tissue parameters (PD, T1, T2, T2*) each sequence's signal depends on: spin-echo readouts
# (se, ir, space) refocus static dephasing (T2), gradient-echo readouts (gre, mprage) do not (T2*).
DEPENDS = {
    "se": (Protocol("T2w", "se", 3.0, 4000.0, 100.0, None, 90.0), (True, True, True, False)),
    "ir": (Protocol("FLAIR", "ir", 3.0, 9000.0, 90.0, 2500.0, 150.0), (True, True, True, False)),
    "space": (Protocol("T2w", "space", 3.0, 3200.0, 400.0, None, "T2var"), (True, True, True, False)),
    "gre": (Protocol("T2starw", "gre", 3.0, 600.0, 20.0, None, 20.0), (True, True, False, True)),
    "mprage": (Protocol("T1w", "mprage", 3.0, 2300.0, 2.3, 900.0, 9.0), (True, True, False, True)),
}


def _tissue_params():
    return [torch.tensor([0.8, 0.7], requires_grad=True), torch.tensor([1500.0, 900.0], requires_grad=True),
            torch.tensor([100.0, 80.0], requires_grad=True), torch.tensor([60.0, 50.0], requires_grad=True)]


def _flows(p: torch.Tensor) -> bool:
    return p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0


def test_gradients_flow_to_every_tissue_parameter():
    """PD, T1, T2 and T2*: one FLAIR (spin-echo readout: T2) and one T2*-weighted GRE (T2*) together."""
    params = _tissue_params()
    loss = sum(th_sig.sequence_signal(DEPENDS[seq][0], *params).sum() for seq in ("ir", "gre"))
    loss.backward()
    assert [_flows(p) for p in params] == [True, True, True, True]


@pytest.mark.parametrize("sequence", sorted(DEPENDS))
def test_gradients_reach_exactly_the_parameters_each_sequence_depends_on(sequence):
    protocol, expected = DEPENDS[sequence]
    params = _tissue_params()
    th_sig.sequence_signal(protocol, *params).sum().backward()
    assert tuple(_flows(p) for p in params) == expected
    # the gradient is the numpy equation's own slope (central difference of the reference)
    base = [p.detach().double().numpy() for p in params]
    for i, p in enumerate(params):
        if not expected[i]:
            continue
        h = 1e-4 * np.abs(base[i]).max()
        up = [b.copy() for b in base]
        down = [b.copy() for b in base]
        up[i] = up[i] + h
        down[i] = down[i] - h
        slope = (np_sig.sequence_signal(protocol, *up) - np_sig.sequence_signal(protocol, *down)) / (2 * h)
        np.testing.assert_allclose(p.grad.double().numpy(), slope, rtol=2e-3, atol=1e-9)


def test_invalid_protocol_is_refused_as_in_numpy():
    with pytest.raises(np_sig.PhysicsParameterError, match="TI"):
        th_sig.sequence_signal(Protocol("FLAIR", "ir", 3.0, 2000.0, 90.0, 2500.0, 150.0), *map(_t, (PD, T1, T2, T2S)))
