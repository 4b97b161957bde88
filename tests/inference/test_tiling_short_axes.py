"""Faithful tiling of axes shorter than the window, at non-integer scales (issue 19, item 4).

The published demo fails on an axis shorter than its 60-voxel window; faithful mode zero-pads such
an axis to the window with the content centred (``pad_lo`` voxels before it), runs the published
arithmetic on the padded axis (an output of ``int(W * s)`` voxels; window cell ``k`` written to
output voxel ``int(start * s) + k``), and keeps ``int(N * s)`` output voxels from voxel
``int(pad_lo * s)`` on: truncation, as everywhere in the published arithmetic. The reference below
is that loop written out over the padded axis (and, for the engine, over a zero-padded volume).
At the scales of the older short-axis test (n = 40, pad 10) ``pad_lo * s`` is an integer or ends
in .5, where ``round`` and ``int`` agree; here it is not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.inference.conftest import Bundle, IdentityNet, sample, smooth_volume
from tumsyn_bids.inference.engine import synthesize
from tumsyn_bids.inference.geometry import output_grid
from tumsyn_bids.inference.tiling import plan_windows, published_axis_windows


def padded_demo_axis(n: int, s: float, w: int = 60, stride: int = 30) -> tuple[int, int, list[list[tuple[int, int]]]]:
    """(pad_lo, cells, per kept output voxel the (window start, cell) pairs written to it)."""
    padded = max(n, w)
    pad_lo = (padded - n) // 2
    cells = int(w * s)
    count = math.ceil((padded - w) / stride) + 1
    starts = [min(i * stride, padded - w) for i in range(count)]
    full: list[list[tuple[int, int]]] = [[] for _ in range(int(padded * s))]
    for a in starts:
        for k in range(cells):
            full[int(a * s) + k].append((a, k))
    crop = int(pad_lo * s)
    return pad_lo, cells, full[crop : crop + int(n * s)]


SHORT = [46, 41, 33, 57, 13]
FRACTIONAL = [1.1, 1.2, 0.7, 1.3, 1.0 / 0.7, 2.3, 0.9]


@pytest.mark.parametrize("s", FRACTIONAL)
@pytest.mark.parametrize("n", SHORT)
def test_short_axis_plan_is_the_published_loop_on_the_padded_axis(n, s):
    pad_lo_ref, cells, contrib = padded_demo_axis(n, s)
    pad_lo, pad_hi, m, wins = published_axis_windows(n, s, 60, 30)
    assert (pad_lo, pad_lo + n + pad_hi) == (pad_lo_ref, 60)
    assert m == int(n * s) == len(contrib)
    cover: list[list[tuple[int, int]]] = [[] for _ in range(m)]
    for win in wins:
        for j, c in zip(range(win.out_lo, win.out_hi), win.coords, strict=True):
            k = round((c + 1.0) * cells / 2.0 - 0.5)  # the cell whose centre this coordinate is
            assert c == pytest.approx(-1.0 + (2 * k + 1) / cells, abs=1e-12), f"voxel {j}: off the cell centres"
            cover[j].append((win.start, k))
    for j in range(m):
        assert cover[j] == contrib[j], f"output voxel {j} (n={n}, s={s})"


def test_46_voxels_at_1_1_start_at_cell_7():
    """The issue's example: pad 7; int(7 * 1.1) = 7, so output voxel 0 is cell 7 of the window's 66."""
    pad_lo, _, m, wins = published_axis_windows(46, 1.1, 60, 30)
    assert pad_lo == 7 and m == 50 and len(wins) == 1 and wins[0].out_lo == 0
    assert wins[0].coords[0] == pytest.approx(-1.0 + 15 / 66, abs=1e-12)  # cell 7: (2*7 + 1) / 66
    assert wins[0].coords[-1] == pytest.approx(-1.0 + 113 / 66, abs=1e-12)  # cell 56 = 7 + 49


def _demo_loop_on_padded(vol: np.ndarray, scales, w: int, stride: int):
    """The published loop on ``vol`` zero-padded (centred) to ``w`` along short axes, cropped back."""
    pads = [((max(n, w) - n) // 2, max(n, w) - n - (max(n, w) - n) // 2) for n in vol.shape]
    padded = np.pad(vol, pads)
    sizes = [int(n * s) for n, s in zip(padded.shape, scales, strict=True)]
    cells = [int(w * s) for s in scales]
    total, count = np.zeros(sizes), np.zeros(sizes)
    starts = [[min(i * stride, n - w) for i in range(math.ceil((n - w) / stride) + 1)] for n in padded.shape]
    lin = [torch.tensor([-1.0 + (2 * k + 1) / c for k in range(c)]) for c in cells]
    q = torch.stack(torch.meshgrid(*lin, indexing="ij"), -1).reshape(1, -1, 3)
    for a0 in starts[0]:
        for a1 in starts[1]:
            for a2 in starts[2]:
                crop = torch.from_numpy(padded[a0 : a0 + w, a1 : a1 + w, a2 : a2 + w].astype(np.float32))[None, None]
                pred = sample(crop, q, "zeros").reshape(cells).double().numpy()
                firsts = [int(a * s) for a, s in zip((a0, a1, a2), scales, strict=True)]
                sl = tuple(slice(f, f + c) for f, c in zip(firsts, cells, strict=True))
                total[sl] += pred
                count[sl] += 1
    keep = tuple(slice(int(lo * s), int(lo * s) + int(n * s))
                 for (lo, _), n, s in zip(pads, vol.shape, scales, strict=True))
    return total[keep], count[keep]


def test_engine_faithful_on_short_axes_equals_the_padded_published_loop():
    # window 20: axis 1 (13 voxels, pad 3, s = 1.2: crop int(3.6) = 3) and axis 2 (16 voxels, pad 2,
    # s = 1.3: crop int(2.6) = 2) are short; axis 0 is not
    vol = smooth_volume((27, 13, 16), seed=5)
    aff = np.diag([1.0, 1.2, 1.3, 1.0])
    bundle = Bundle(IdentityNet(padding="zeros"), window=20)
    res = synthesize(vol, aff, "p", bundle, voxel_size=(1.0, 1.0, 1.0), mode="faithful", device="cpu",
                     progress=False, normalize=False)
    grid = output_grid(vol.shape, aff, (1.0, 1.0, 1.0), published=True)
    total, count = _demo_loop_on_padded(vol, grid.scale, 20, 10)
    assert res.data.shape == total.shape == (27, 15, 20)
    assert count.min() >= 1  # no uncovered voxels on this volume
    np.testing.assert_allclose(res.data, total / count, rtol=1e-5, atol=1e-4)
    plan = plan_windows(vol.shape, grid.out_shape, 20, 10, spread=False, scales=grid.scale)
    assert plan.pad == ((0, 0), (3, 4), (2, 2))
