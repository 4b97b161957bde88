"""Known answers of the spoiled gradient echo: the TE/T2* term, worked out by hand (times in ms)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumsyn_bids.physics import signals as sig


def test_spoiled_gradient_echo_known_value():
    # PD 1, T1 1000, T2* 50, TR 20, TE 10, 30 degrees:
    # E1 = exp(-0.02) = 0.98019867; steady state sin(30)(1-E1)/(1-cos(30)E1) = 0.5*0.01980133/0.15112305
    #    = 0.06551392; T2* decay exp(-10/50) = 0.81873075; S = 0.05363826
    assert sig.spoiled_gradient_echo(1.0, 1000.0, 50.0, 20.0, 10.0, 30.0) == pytest.approx(0.05363826, rel=1e-6)


def test_te_term_is_exp_minus_te_over_t2star():
    t2s = np.array([20.0, 50.0, 80.0])
    at_te0 = sig.spoiled_gradient_echo(1.0, 1000.0, t2s, 20.0, 0.0, 15.0)
    for te in (5.0, 10.0, 15.0):
        ratio = sig.spoiled_gradient_echo(1.0, 1000.0, t2s, 20.0, te, 15.0) / at_te0
        np.testing.assert_allclose(ratio, np.exp(-te / t2s), rtol=1e-12)
    # one T2* later the signal has fallen to 1/e, whatever TR, T1 and flip angle are
    s0 = sig.spoiled_gradient_echo(0.7, 800.0, 30.0, 100.0, 4.0, 20.0)
    s1 = sig.spoiled_gradient_echo(0.7, 800.0, 30.0, 100.0, 34.0, 20.0)
    assert s1 / s0 == pytest.approx(math.exp(-1.0), rel=1e-12)


def test_te_term_uses_t2star_not_t1():
    # changing T1 changes the steady state but not the TE ratio; changing T2* changes the ratio
    r = [sig.spoiled_gradient_echo(1.0, t1, 40.0, 25.0, 12.0, 25.0)
         / sig.spoiled_gradient_echo(1.0, t1, 40.0, 25.0, 2.0, 25.0)
         for t1 in (600.0, 1400.0)]
    assert r[0] == pytest.approx(r[1], rel=1e-12) == pytest.approx(math.exp(-10.0 / 40.0), rel=1e-12)
    shorter = (sig.spoiled_gradient_echo(1.0, 600.0, 20.0, 25.0, 12.0, 25.0)
               / sig.spoiled_gradient_echo(1.0, 600.0, 20.0, 25.0, 2.0, 25.0))
    assert shorter == pytest.approx(math.exp(-10.0 / 20.0), rel=1e-12) and shorter < r[0]
