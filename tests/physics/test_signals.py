"""Known answers of the signal equations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tumsyn_bids.errors import UsageError
from tumsyn_bids.physics import signals as sig
from tumsyn_bids.physics.signals import PhysicsParameterError, validate_protocol
from tumsyn_bids.protocols import Protocol, default_protocol


def test_spin_echo_decays_with_te_at_rate_t2():
    te = np.array([20.0, 40.0, 80.0, 120.0])
    s = np.array([sig.spin_echo(1.0, 1000.0, 80.0, 10000.0, t, exact=False) for t in te])
    assert np.all(np.diff(s) < 0)
    # log-signal slope against TE is -1/T2
    slope = np.polyfit(te, np.log(s), 1)[0]
    assert slope == pytest.approx(-1 / 80.0, rel=1e-6)
    # longer T2 decays less
    assert sig.spin_echo(1.0, 1000.0, 120.0, 5000.0, 100.0) > sig.spin_echo(1.0, 1000.0, 60.0, 5000.0, 100.0)


def test_spin_echo_exact_form_approaches_simple_form_for_long_tr():
    exact = sig.spin_echo(0.8, 900.0, 80.0, 20000.0, 10.0, exact=True)
    simple = sig.spin_echo(0.8, 900.0, 80.0, 20000.0, 10.0, exact=False)
    assert exact == pytest.approx(simple, rel=1e-6)
    assert sig.spin_echo(0.8, 900.0, 80.0, 500.0, 10.0) < sig.spin_echo(0.8, 900.0, 80.0, 500.0, 10.0, exact=False)


def test_flair_nulls_csf_at_t1_ln2_for_long_tr():
    t1 = 4000.0
    ti = t1 * np.log(2)
    tr = 1e6  # TR >> T1
    assert sig.inversion_recovery(1.0, t1, 2000.0, tr, 90.0, ti) < 1e-9
    assert sig.ir_null_time(t1) == pytest.approx(ti)
    assert sig.inversion_recovery(1.0, t1, 2000.0, tr, 90.0, ti * 0.8) > 0.05


@pytest.mark.parametrize("tr,eta", [(9000.0, 1.0), (6000.0, 0.95), (11000.0, 0.9)])
def test_inversion_recovery_exact_null_formula(tr, eta):
    t1 = 3700.0
    ti_null = float(sig.ir_null_time(t1, tr, efficiency=eta))
    expected = t1 * (np.log(1 + eta) - np.log(1 + np.exp(-tr / t1)))
    assert ti_null == pytest.approx(expected)
    assert ti_null < t1 * np.log(2) + 1e-9  # a finite TR moves the null earlier
    signed = sig.inversion_recovery(1.0, t1, 2000.0, tr, 90.0, ti_null, efficiency=eta, magnitude=False)
    assert abs(float(signed)) < 1e-9
    before = sig.inversion_recovery(1.0, t1, 2000.0, tr, 90.0, ti_null - 200, efficiency=eta, magnitude=False)
    after = sig.inversion_recovery(1.0, t1, 2000.0, tr, 90.0, ti_null + 200, efficiency=eta, magnitude=False)
    assert before < 0 < after  # sign flip through the null; magnitude image shows |.|


def test_default_flair_protocols_suppress_csf_relative_to_brain():
    from tumsyn_bids.physics.tissues import kind_ranges

    for field in (1.5, 3.0):
        p = default_protocol("FLAIR", field)
        mid = {k: {q: sum(v) / 2 for q, v in kind_ranges(k, field).items()} for k in ("csf", "wm", "gm")}
        csf = sig.inversion_recovery(mid["csf"]["pd"], mid["csf"]["t1"], mid["csf"]["t2"], p.tr_ms, p.te_ms, p.ti_ms)
        gm = sig.inversion_recovery(mid["gm"]["pd"], mid["gm"]["t1"], mid["gm"]["t2"], p.tr_ms, p.te_ms, p.ti_ms)
        assert csf < 0.25 * gm


def test_flash_maximum_is_at_the_ernst_angle():
    for t1, tr in ((1000.0, 20.0), (1400.0, 700.0), (4000.0, 30.0)):
        angles = np.linspace(0.1, 90, 9000)
        s = np.array([sig.spoiled_gradient_echo(1.0, t1, 50.0, tr, 5.0, a) for a in angles])
        assert angles[np.argmax(s)] == pytest.approx(float(sig.ernst_angle(tr, t1)), abs=0.02)


def _mprage_by_iteration(t1, tr, ti, fa, spacing, n, eta, cycles=60):
    """Pulse-by-pulse simulation of many MPRAGE cycles (reference for the closed form)."""
    cos_a = np.cos(np.radians(fa))
    mz, centre = 1.0, None
    t_first = ti - (n // 2) * spacing

    def rec(m, t):
        return 1 - (1 - m) * np.exp(-t / t1)

    for _ in range(cycles):
        mz = rec(-eta * mz, t_first)
        for j in range(n):
            if j == n // 2:
                centre = mz
            mz = rec(mz * cos_a, spacing)
        mz = rec(mz, tr - t_first - n * spacing)
    return abs(centre) * np.sin(np.radians(fa))


@pytest.mark.parametrize("t1", [800.0, 1400.0, 4000.0])
def test_mprage_closed_form_matches_cycle_by_cycle_iteration(t1):
    tr, te, ti, fa = 2300.0, 2.3, 900.0, 9.0
    spacing, n = sig.mprage_timing(tr, te, ti)
    closed = sig.mprage(1.0, t1, 1e9, tr, te, ti, fa, efficiency=0.96)
    assert closed == pytest.approx(_mprage_by_iteration(t1, tr, ti, fa, spacing, n, 0.96), rel=1e-6)


def test_space_t2var_heavier_t2_weighting_with_longer_te():
    te_values = [400.0, 563.0, 700.0]
    ratio = [sig.space_t2var(1.0, 4000.0, 1800.0, 3200.0, te) / sig.space_t2var(0.7, 850.0, 75.0, 3200.0, te)
             for te in te_values]
    assert ratio[0] < ratio[1] < ratio[2]  # CSF/WM contrast grows with TE


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"tr_ms": -5.0}, "TR"),
        ({"tr_ms": 0.0}, "TR"),
        ({"te_ms": 9500.0}, "TE"),
        ({"ti_ms": 12000.0}, "TI"),
        ({"ti_ms": None}, "TI"),
        ({"flip_angle": 0.0}, "flip angle"),
        ({"flip_angle": -10.0}, "flip angle"),
        ({"sequence": "epi"}, "sequence"),
    ],
)
def test_impossible_parameters_raise_one_line_errors(changes, needle):
    p = replace(default_protocol("FLAIR", 3.0), **changes)
    with pytest.raises(PhysicsParameterError) as info:
        validate_protocol(p)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_mprage_ti_longer_than_tr_and_t2var_on_gre_are_rejected():
    with pytest.raises(PhysicsParameterError, match="TI"):
        validate_protocol(replace(default_protocol("T1w", 3.0), ti_ms=2500.0))
    with pytest.raises(PhysicsParameterError, match="T2var"):
        validate_protocol(Protocol("T2starw", "gre", 3.0, 700.0, 20.0, None, "T2var"))
    with pytest.raises(PhysicsParameterError, match="no inversion"):
        validate_protocol(replace(default_protocol("PDw", 3.0), ti_ms=500.0))
    with pytest.raises(PhysicsParameterError, match="flip angle"):
        sig.spoiled_gradient_echo(1.0, 1000.0, 50.0, 20.0, 5.0, 0.0)


def test_every_default_protocol_is_valid():
    from tumsyn_bids.protocols import all_protocols

    for p in all_protocols():
        validate_protocol(p)
