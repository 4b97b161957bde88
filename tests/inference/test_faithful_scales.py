"""Faithful mode reproduces the published demo's window index arithmetic at every scale.

The reference below is re-derived from the published demo's description (60^3 windows at stride
30 plus one flush with the end; scale s = input voxel / target voxel; an output of int(N * s)
voxels; each window decodes the cell centres of its own int(60 * s) grid and writes them from
output voxel int(start * s) on; uniform averaging), written as a plain loop over windows and cells.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.inference.conftest import Bundle, IdentityNet, sample, smooth_volume
from tumsyn_bids.inference.engine import synthesize
from tumsyn_bids.inference.geometry import output_grid
from tumsyn_bids.inference.tiling import axis_windows, plan_windows, published_axis_windows

SCALES = [1.0, 2.0, 3.0, 0.5, 1.25, 1.5, 2.5, 1.0 / 0.7, 1.1, 2.3]
SIZES = [60, 61, 97, 182, 218]


def demo_starts(n: int, w: int, stride: int) -> list[int]:
    """Window starts of the demo: every ``stride`` voxels, the last one moved flush with the end."""
    count = math.ceil((n - w) / stride) + 1
    return [min(i * stride, n - w) for i in range(count)]


def demo_reference(n: int, s: float, w: int = 60, stride: int = 30):
    """(output size, cells per window, per output voxel the list of (window start, cell index))."""
    assert n >= w  # the demo fails on shorter axes
    size = int(n * s)
    cells = int(w * s)
    contrib: list[list[tuple[int, int]]] = [[] for _ in range(size)]
    for start in demo_starts(n, w, stride):
        first = int(start * s)
        assert first + cells <= size  # truncation never writes past the end
        for k in range(cells):
            contrib[first + k].append((start, k))
    return size, cells, contrib


def check_axis(n, s, wins, pad_lo, size, cells, contrib, crop=0):
    """The plan's windows along one axis against the reference (``crop``: output voxels cut off before)."""
    cover = [[] for _ in range(size)]
    for win in wins:
        assert np.all(win.weights == 1.0)  # uniform averaging
        first = int(win.start * s) - crop
        for j, c in zip(range(win.out_lo, win.out_hi), win.coords, strict=False):
            k = j - first
            assert c == pytest.approx(-1.0 + (2 * k + 1) / cells, abs=1e-12)
            cover[j].append((win.start, k))
    gaps = 0
    for j in range(size):
        want = contrib[j + crop]
        if want:
            assert sorted(cover[j]) == sorted(want), f"output voxel {j}"
        else:  # the demo leaves it uncovered (NaN): exactly one window continues its grid over it
            gaps += 1
            assert len(cover[j]) == 1 and cover[j][0][1] >= cells, f"output voxel {j}"
    return gaps


@pytest.mark.parametrize("s", SCALES)
@pytest.mark.parametrize("n", SIZES)
def test_faithful_axis_plan_is_the_published_arithmetic(n, s):
    size, cells, contrib = demo_reference(n, s)
    pad_lo, pad_hi, m, wins = published_axis_windows(n, s, 60, 30)
    assert (pad_lo, pad_hi) == (0, 0)
    assert m == size
    assert [w.start for w in wins] == demo_starts(n, 60, 30)
    check_axis(n, s, wins, pad_lo, size, cells, contrib)


def test_non_integer_scale_truncates_where_the_exact_grid_rounds():
    # N=61 at 1.5x: the published demo writes 91 voxels, the exact grid (fast mode) 92
    assert published_axis_windows(61, 1.5, 60, 30)[2] == 91
    assert output_grid((61, 61, 61), np.eye(4), 1 / 1.5, published=True).out_shape == (91, 91, 91)
    assert output_grid((61, 61, 61), np.eye(4), 1 / 1.5).out_shape == (92, 92, 92)
    # and the offsets truncate: the window at 30 starts at output voxel int(37.5) = 37 at 1.25x
    wins = published_axis_windows(97, 1.25, 60, 30)[3]
    assert [(w.start, w.out_lo) for w in wins] == [(0, 0), (30, 37), (37, 46)]
    np.testing.assert_allclose(wins[1].coords[:2], [-1 + 1 / 75, -1 + 3 / 75])  # cells 0, 1 of its own grid
    # same output size (round and int agree on 121.25), but the exact grid samples elsewhere
    exact = axis_windows(97, 121, 60, 30, spread=False)[2]
    assert [w.out_lo for w in exact] == [0, 37, 46]
    assert abs(exact[1].coords[0] - wins[1].coords[0]) > 1e-3


def test_voxels_the_demo_leaves_uncovered_are_decoded_by_the_window_before():
    # 1 mm -> 0.7 mm on 182 voxels: 60 * s = 85.7 -> 85 cells per window; the last window ends one
    # voxel short of int(182 * s) = 260 (the demo writes NaN there)
    s = 1.0 / 0.7
    size, cells, contrib = demo_reference(182, s)
    assert sum(not c for c in contrib) >= 1
    pad_lo, _, m, wins = published_axis_windows(182, s, 60, 30)
    assert check_axis(182, s, wins, pad_lo, size, cells, contrib) >= 1
    assert wins[-1].out_hi == m and np.all(wins[-1].coords[-1] > 1.0)


@pytest.mark.parametrize("s", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("n", [60, 61, 97, 182])
def test_integer_scales_equal_the_exact_plan(n, s):
    _, _, m, pub = published_axis_windows(n, s, 60, 30)
    _, _, exact = axis_windows(n, int(n * s), 60, 30, spread=False, scheme="published")
    assert m == n * s and len(pub) == len(exact)
    for a, b in zip(pub, exact, strict=False):
        assert (a.start, a.out_lo, a.out_hi) == (b.start, b.out_lo, b.out_hi)
        np.testing.assert_allclose(a.coords, b.coords, atol=1e-12)


@pytest.mark.parametrize("s", [1.0, 2.0, 0.5, 1.5, 1.25])
def test_short_axis_is_padded_centrally_and_cropped_back(s):
    # 40 voxels < 60: padded 10 + 40 + 10; the arithmetic runs on the 60 padded voxels and the
    # output is cropped from voxel int(10 * s) on, int(40 * s) voxels
    pad_lo, pad_hi, m, wins = published_axis_windows(40, s, 60, 30)
    assert (pad_lo, pad_hi) == (10, 10) and m == int(40 * s) and len(wins) == 1
    _, cells, contrib = demo_reference(60, s)
    check_axis(40, s, wins, pad_lo, m, cells, contrib, crop=int(10 * s))
    if s == int(s):  # at integer scales the crop lands on the exact grid of the unpadded axis
        _, _, exact = axis_windows(40, m, 60, 30, spread=False)
        np.testing.assert_allclose(wins[0].coords, exact[0].coords, atol=1e-12)


def test_3d_plan_from_the_faithful_grid():
    # voxels 1.5 x 1.25 x 2.5 mm resampled to 1 mm: scales exactly 1.5, 1.25, 2.5
    shape = (61, 97, 70)
    grid = output_grid(shape, np.diag([1.5, 1.25, 2.5, 1.0]), 1.0, published=True)
    assert grid.scale == (1.5, 1.25, 2.5)
    assert grid.out_shape == (91, 121, 175)
    plan = plan_windows(shape, grid.out_shape, 60, 30, spread=False, scales=grid.scale)
    per_axis = [published_axis_windows(n, s, 60, 30)[3] for n, s in zip(shape, grid.scale, strict=False)]
    assert len(plan.windows) == np.prod([len(w) for w in per_axis])
    count = np.zeros(grid.out_shape, int)
    for win in plan.windows:
        count[win.out_slices] += 1
    assert count.min() >= 1
    # the published sizes are enforced, and the arithmetic is faithful-mode only
    with pytest.raises(ValueError, match="int"):
        plan_windows(shape, (92, 121, 175), 60, 30, spread=False, scales=grid.scale)
    with pytest.raises(ValueError, match="published"):
        plan_windows(shape, grid.out_shape, 60, 45, spread=True, scheme="partition", scales=grid.scale)


def test_faithful_output_affine_is_geometrically_consistent():
    """The header puts every output voxel where the windows on the published grid sampled it
    (not at the input origin, as the published writer does)."""
    rot = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    spacing = np.array([1.5, 1.25, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = rot * spacing
    aff[:3, 3] = [-90.0, 12.0, 33.0]
    shape = (61, 97, 40)
    grid = output_grid(shape, aff, 1.0, published=True)
    np.testing.assert_allclose(grid.voxel_size, 1.0, atol=1e-12)  # the requested voxel size exactly
    np.testing.assert_allclose(grid.scale, spacing, rtol=1e-12)
    # output voxel 0 sits half an output voxel inside the input's outer edge, not at the input origin
    edge = aff @ np.r_[-0.5, -0.5, -0.5, 1.0]
    np.testing.assert_allclose(grid.affine @ np.r_[0, 0, 0, 1.0], edge + aff @ np.r_[0.5 / spacing, 0.0], atol=1e-9)
    assert np.linalg.norm(grid.affine[:3, 3] - aff[:3, 3]) > 0.1

    plan = plan_windows(shape, grid.out_shape, 60, 30, spread=False, scales=grid.scale)
    checked = 0
    for win in plan.windows:
        # windows whose grid lies on the published output grid: integer start * s and 60 * s
        if not all(a.start * s == int(a.start * s) and 60 * s == int(60 * s)
                   for a, s in zip(win.axes, grid.scale, strict=False)):
            continue
        idx = np.stack(np.meshgrid(*(np.arange(a.out_lo, a.out_hi) for a in win.axes), indexing="ij"), -1)
        crd = np.stack(np.meshgrid(*(a.coords for a in win.axes), indexing="ij"), -1)
        pads = np.array([lo for lo, _ in plan.pad])
        starts = np.array([a.start for a in win.axes])
        sampled = starts - pads + (crd + 1.0) * 60 / 2.0 - 0.5  # input index the decoder samples
        world_sampled = sampled.reshape(-1, 3) @ aff[:3, :3].T + aff[:3, 3]
        world_header = idx.reshape(-1, 3) @ grid.affine[:3, :3].T + grid.affine[:3, 3]
        # exact on axes without padding; within the crop's truncation (< 1 output voxel) on the padded one
        err = np.abs(np.linalg.solve(aff[:3, :3], (world_sampled - world_header).T).T)
        assert err[:, :2].max() < 1e-9
        assert err[:, 2].max() < 1.0 / grid.scale[2] + 1e-9
        checked += 1
    assert checked >= 1
    # at an integer scale the faithful header is the exact (fast mode) header
    np.testing.assert_allclose(output_grid(shape, aff, spacing / 2, published=True).affine,
                               output_grid(shape, aff, spacing / 2).affine, atol=1e-12)


def demo_loop(vol: np.ndarray, scales, w: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The demo's loop with a trilinear "network": per window, decode its own cell grid and add it in
    from int(start * s); returns (sum, count). Axes must be at least ``w`` long."""
    sizes = [int(n * s) for n, s in zip(vol.shape, scales, strict=False)]
    cells = [int(w * s) for s in scales]
    total, count = np.zeros(sizes), np.zeros(sizes)
    axes = [demo_starts(n, w, stride) for n in vol.shape]
    for a0 in axes[0]:
        for a1 in axes[1]:
            for a2 in axes[2]:
                crop = torch.from_numpy(vol[a0 : a0 + w, a1 : a1 + w, a2 : a2 + w].astype(np.float32))[None, None]
                lin = [torch.tensor([-1.0 + (2 * k + 1) / c for k in range(c)]) for c in cells]
                q = torch.stack(torch.meshgrid(*lin, indexing="ij"), -1).reshape(1, -1, 3)
                pred = sample(crop, q, "zeros").reshape(cells).double().numpy()
                o = [int(a * s) for a, s in zip((a0, a1, a2), scales, strict=False)]
                sl = tuple(slice(oo, oo + c) for oo, c in zip(o, cells, strict=False))
                total[sl] += pred
                count[sl] += 1
    return total, count


def test_engine_faithful_equals_the_demo_loop_and_fast_keeps_the_exact_grid():
    vol = smooth_volume((21, 27, 33), seed=2)
    aff = np.diag([1.5, 1.25, 1.0, 1.0])
    voxel = (1.0, 1.0, 0.7)  # scales 1.5, 1.25, 1/0.7 (the last leaves the demo one voxel short)
    bundle = Bundle(IdentityNet(padding="zeros"), window=20)
    res = synthesize(vol, aff, "p", bundle, voxel_size=voxel, mode="faithful", device="cpu", progress=False,
                     normalize=False)
    scales = (1.5, 1.25, 1.0 / 0.7)
    total, count = demo_loop(vol, scales, 20, 10)
    assert res.data.shape == total.shape == (31, 33, 47)
    covered = count > 0
    assert (~covered).sum() > 0  # the demo's NaN voxels exist here (last plane of axis 2)
    np.testing.assert_allclose(res.data[covered], (total / np.where(covered, count, 1))[covered],
                               rtol=1e-5, atol=1e-4)
    assert np.all(np.isfinite(res.data))
    np.testing.assert_allclose(res.affine, output_grid(vol.shape, aff, voxel, published=True).affine)
    fast = synthesize(vol, aff, "p", bundle, voxel_size=voxel, mode="fast", device="cpu", progress=False,
                      normalize=False)
    assert fast.data.shape == output_grid(vol.shape, aff, voxel).out_shape == (32, 34, 47)
    np.testing.assert_allclose(fast.affine, output_grid(vol.shape, aff, voxel).affine)
