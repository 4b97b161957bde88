"""Window plans: every output voxel covered, coordinates at the right cell centres."""

from __future__ import annotations

import numpy as np
import pytest

from tumsyn_bids.inference.geometry import output_grid
from tumsyn_bids.inference.tiling import axis_windows, plan_windows, window_starts


def test_published_starts_for_a_whole_brain():
    # 182 x 218 x 182 with 60^3 windows at stride 30: the 252 patches of the published demo
    counts = [len(window_starts(n, 60, 30, spread=False)) for n in (182, 218, 182)]
    assert counts == [6, 7, 6] and np.prod(counts) == 252
    assert window_starts(182, 60, 30, spread=False)[-2:] == [120, 122]


def test_spread_starts_have_bounded_even_steps():
    for padded in (60, 61, 100, 182, 218):
        starts = window_starts(padded, 60, 45, spread=True)
        assert starts[0] == 0 and starts[-1] == padded - 60
        steps = np.diff(starts)
        assert np.all(steps <= 45) and (steps.size == 0 or steps.max() - steps.min() <= 1)


@pytest.mark.parametrize(
    ("n", "m", "window", "stride", "spread"),
    [(61, 61, 20, 10, False), (61, 84, 20, 15, True), (33, 99, 20, 10, False), (70, 47, 20, 15, True),
     (7, 15, 20, 10, False), (182, 260, 60, 45, True), (5, 1, 4, 3, True)],
)
def test_every_output_voxel_covered_with_centred_coords(n, m, window, stride, spread):
    pad_lo, pad_hi, wins = axis_windows(n, m, window, stride, spread=spread)
    assert pad_lo + n + pad_hi == max(n, window)
    covered = np.zeros(m, int)
    centres = (np.arange(m) + 0.5) * n / m - 0.5
    for w in wins:
        covered[w.out_lo : w.out_hi] += 1
        assert np.all(np.abs(w.coords) < 1.0)
        # a coordinate maps back to the output centre's position in padded input index space
        back = (w.coords + 1.0) * window / 2.0 - 0.5 + w.start - pad_lo
        np.testing.assert_allclose(back, centres[w.out_lo : w.out_hi], atol=1e-9)
    assert covered.min() >= 1


def test_integer_scale_uses_the_published_cell_centres():
    # scale 2, window 60 starting on a voxel: the 120 cell centres of a 120-cell grid over [-1, 1]
    _, _, wins = axis_windows(180, 360, 60, 30, spread=False)
    middle = wins[1]
    assert (middle.out_lo, middle.out_hi) == (60, 180)
    np.testing.assert_allclose(middle.coords, -1 + (2 * np.arange(120) + 1) / 120)


def test_plan_3d_covers_61x70x33_at_non_integer_scale():
    grid = output_grid((61, 70, 33), np.diag([1.0, 1.0, 2.2, 1.0]), (0.73, 0.9, 1.0))
    plan = plan_windows(grid.in_shape, grid.out_shape, 20, 15, spread=True)
    count = np.zeros(grid.out_shape, int)
    for w in plan.windows:
        count[w.out_slices] += 1
        assert w.out_shape == tuple(len(a.coords) for a in w.axes)
    assert count.min() >= 1
    assert plan.padded_shape == (61, 70, 33)


@pytest.mark.parametrize(("n", "m"), [(182, 182), (182, 364), (61, 84), (70, 47), (33, 99)])
def test_partition_weights_sum_to_one_and_avoid_window_edges(n, m):
    window, stride = 20, 15
    pad_lo, _, wins = axis_windows(n, m, window, stride, spread=True, scheme="partition")
    _, _, full = axis_windows(n, m, window, stride, spread=True, scheme="published")
    total = np.zeros(m)
    decoded = 0
    for w, f in zip(wins, full, strict=False):
        total[w.out_lo : w.out_hi] += w.weights
        decoded += w.out_hi - w.out_lo
        assert f.out_lo <= w.out_lo and w.out_hi <= f.out_hi  # a subset of the window's voxels
        assert np.all(w.weights >= 0) and np.all(w.weights <= 1)
        if len(wins) > 1:  # no weight within a quarter overlap of an inner window edge
            p = (np.arange(w.out_lo, w.out_hi) + 0.5) * n / m - 0.5 + pad_lo
            inner = ((p < w.start - 0.5 + 1.25) & (w.start > 0)) | (
                (p > w.start + window - 0.5 - 1.25) & (w.start + window < max(n, window)))
            assert np.all(w.weights[inner] < 1e-9)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    full_count = sum(f.out_hi - f.out_lo for f in full)
    assert len(wins) == 1 or decoded < full_count  # fewer queries than decoding whole windows


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme"):
        axis_windows(10, 10, 4, 3, spread=True, scheme="gaussian")
