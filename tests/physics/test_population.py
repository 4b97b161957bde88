"""Population tissue draws: means at spread 0, realistic spread, GM/WM order kept."""

from __future__ import annotations

import numpy as np

from tumsyn_bids.physics.signals import sequence_signal
from tumsyn_bids.physics.tissues import TissueClass, draw_population_properties, nominal_tissue_properties
from tumsyn_bids.protocols import default_protocol

CLASSES = [TissueClass("wm", "wm"), TissueClass("cortex", "gm"), TissueClass("csf", "csf"),
           TissueClass("extracerebral_5", "extracerebral")]


def test_spread_zero_is_the_population_mean():
    mean = nominal_tissue_properties(CLASSES, 3.0)
    draw = draw_population_properties(CLASSES, 3.0, np.random.default_rng(0), spread=0.0)
    np.testing.assert_allclose(draw.t1[:3], mean.t1[:3])
    np.testing.assert_allclose(draw.t2[:3], mean.t2[:3])


def test_spread_is_realistic_and_gm_wm_order_never_flips():
    rng = np.random.default_rng(1)
    draws = [draw_population_properties(CLASSES, 3.0, rng) for _ in range(2000)]
    t1 = np.array([d.t1[:3] for d in draws])
    cv = t1.std(0) / t1.mean(0)
    assert np.all((cv > 0.03) & (cv < 0.10)), cv
    ratio = t1[:, 1] / t1[:, 0]
    assert ratio.min() > 1.3, ratio.min()
    flair = default_protocol("FLAIR", 3.0)
    for d in draws[:300]:  # GM brighter than WM on FLAIR, as in real 3 T scans
        s = sequence_signal(flair, d.pd[:3], d.t1[:3], d.t2[:3], d.t2s[:3])
        assert s[1] > s[0] > s[2]
    assert all(d.t2s[i] <= d.t2[i] for d in draws[:100] for i in range(4))
