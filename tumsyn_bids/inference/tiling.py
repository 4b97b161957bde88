"""Window plans: where input windows sit, which output voxels each one decodes, and their weights.

Everything here is in the network's array order and in index space (numpy only).

Per axis, the input (``N`` voxels) is zero-padded to ``P = max(N, W)`` voxels (content centred,
``pad_lo`` voxels before it), and windows of ``W`` voxels start at ``a`` (padded index).
Output voxel ``j`` (of ``M``) sits at the continuous input index ``p_j = (j + 0.5) N / M - 0.5``
(see :mod:`.geometry`). A window decodes the output voxels whose centres fall inside its extent,
``a - 0.5 <= p_j + pad_lo < a + W - 0.5`` (half-open, computed in exact integer arithmetic), so
consecutive windows that touch or overlap leave no output voxel uncovered, for any scale, integer
or not. Each such voxel is queried at its window-local cell-centre coordinate in [-1, 1]:
``c = (2 (p_j + pad_lo - a) + 1) / W - 1``; when ``W * M / N`` is an integer and the window starts
on an output-cell boundary these are exactly the cell centres of a ``W * M / N`` grid (the
published scheme); otherwise they are the same regular grid shifted by a sub-cell offset.

Two schemes (exact geometry):

* ``published`` (faithful mode): every window decodes every output voxel inside it, and
  overlapping predictions are averaged uniformly.
* ``partition`` (fast mode): each window owns the output voxels nearer its centre than any
  other window's (boundaries halfway between neighbouring window centres) and decodes only those
  plus a blending band of ``margin`` input voxels either side of each boundary, inside which a
  cosine ramp hands over from one window to the next. The per-axis weights of neighbouring
  windows sum to exactly 1, so their product over axes is a partition of unity in 3D; nothing
  is decoded where its weight would be negligible, and no voxel is taken from near a window's
  edge (where the decoder samples the feature map's zero padding) when ``margin`` is at most half
  the overlap.

Published index arithmetic (faithful mode, ``plan_windows(..., scales=s)``): the published demo
does not place its output voxels on the exact geometry above but truncates. Per axis, with the
scale ``s = v_in / v_out`` (a float), windows of ``W`` voxels at the published starts ``a``
(``0, stride, 2 stride, ...`` plus one flush with the end), each window decodes the
``c = int(W * s)`` cell centres ``-1 + (2 k + 1) / c`` of its own grid and writes them to output
voxels ``int(a * s) + k`` of an output of ``M = int(N * s)`` voxels; overlaps are averaged
uniformly. At integer scales this is the exact plan above. Where it leaves output voxels
uncovered (the published code writes NaN there: ``W * s`` not an integer, so a window's grid ends
before the next window's, or the volume's, first voxel), the window before the gap decodes them by
continuing its own grid (cells ``k >= c``, coordinates just beyond 1). An axis shorter than the
window (the published code fails on it) is zero-padded to ``W`` with the content centred,
``pad_lo`` voxels before it; the arithmetic runs on the padded axis and its output is cropped from
output voxel ``int(pad_lo * s)`` on, ``int(N * s)`` voxels.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tumsyn_bids.inference.geometry import published_size


@dataclass(frozen=True)
class AxisWindow:
    """One window position along one axis."""

    start: int  # padded input index of the first window voxel
    out_lo: int  # first output voxel decoded by this window
    out_hi: int  # one past the last
    coords: np.ndarray  # (out_hi - out_lo,) window-local normalised coordinates, float64
    weights: np.ndarray  # (out_hi - out_lo,) blending weight of each decoded voxel, float64


@dataclass(frozen=True)
class Window:
    """A 3D window: the product of one AxisWindow per axis."""

    axes: tuple[AxisWindow, AxisWindow, AxisWindow]

    @property
    def start(self) -> tuple[int, int, int]:
        return tuple(a.start for a in self.axes)  # type: ignore[return-value]

    @property
    def out_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a.out_lo, a.out_hi) for a in self.axes)  # type: ignore[return-value]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return tuple(a.out_hi - a.out_lo for a in self.axes)  # type: ignore[return-value]


@dataclass(frozen=True)
class WindowPlan:
    """All windows of a volume, and the padding they need."""

    window: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    pad: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # (before, after) per axis
    windows: list[Window]

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.in_shape, self.pad, strict=False))  # type: ignore[return-value]


def window_starts(padded: int, window: int, stride: int, *, spread: bool) -> list[int]:
    """Window starts along an axis of ``padded`` voxels (``padded >= window``).

    ``spread=False``: the published scheme, ``0, stride, 2*stride, ...`` plus a last window flush
    with the end. ``spread=True``: the fewest windows with steps of at most ``stride``, spaced
    as evenly as integers allow.
    """
    if padded < window or window < 1 or stride < 1:
        raise ValueError(f"bad tiling: padded={padded} window={window} stride={stride}")
    last = padded - window
    if not spread:
        starts = list(range(0, last + 1, stride))
        if starts[-1] != last:
            starts.append(last)
        return starts
    count = math.ceil(last / stride) + 1
    if count == 1:
        return [0]
    return sorted({int(round(k * last / (count - 1))) for k in range(count)})


def _ceil_div(num: int, den: int) -> int:
    return -((-num) // den)


def _ramp(t: np.ndarray) -> np.ndarray:
    """Smooth step from 0 (t <= 0) to 1 (t >= 1) with ``ramp(t) + ramp(1 - t) == 1``."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


def axis_windows(
    n: int, m: int, window: int, stride: int, *, spread: bool, scheme: str = "published", margin: float | None = None
) -> tuple[int, int, list[AxisWindow]]:
    """Padding (before, after) and the windows along one axis with ``n`` input and ``m`` output voxels.

    ``scheme`` is ``published`` or ``partition`` (see the module docstring); ``margin`` (input
    voxels) defaults to a quarter of the smallest overlap between neighbouring windows.
    """
    if scheme not in ("published", "partition"):
        raise ValueError(f"unknown tiling scheme {scheme!r}")
    padded = max(n, window)
    pad_lo = (padded - n) // 2
    pad_hi = padded - n - pad_lo
    starts = window_starts(padded, window, stride, spread=spread)
    p_all = (np.arange(m, dtype=np.float64) + 0.5) * (n / m) - 0.5 + pad_lo  # output centres, padded index
    if scheme == "partition" and len(starts) > 1:
        overlap = window - int(np.max(np.diff(starts)))
        band = max(overlap, 0) / 4.0 if margin is None else float(margin)
        band = min(band, max(overlap, 0) / 2.0)
        bounds = [(a + b) / 2.0 + window / 2.0 - 0.5 for a, b in zip(starts[:-1], starts[1:], strict=False)]
    else:
        band, bounds = 0.0, []
    result = []
    for k, a in enumerate(starts):
        rel = a - pad_lo  # window start in unpadded input index
        lo = min(max(_ceil_div(2 * m * rel - n, 2 * n), 0), m)
        hi = min(max(_ceil_div(2 * m * (rel + window) - n, 2 * n), 0), m)
        weights = np.ones(hi - lo)
        if bounds:
            left = bounds[k - 1] if k > 0 else None
            right = bounds[k] if k < len(bounds) else None
            p = p_all[lo:hi]
            keep = np.ones(hi - lo, bool)
            if left is not None:
                keep &= p >= left - band
                weights *= _ramp((p - (left - band)) / (2 * band)) if band > 0 else (p >= left)
            if right is not None:
                keep &= p < right + band
                weights *= 1.0 - (_ramp((p - (right - band)) / (2 * band)) if band > 0 else (p >= right))
            idx = np.flatnonzero(keep)
            if idx.size == 0:
                lo = hi = lo
                weights = weights[:0]
            else:
                first, last = int(idx[0]), int(idx[-1]) + 1  # keep is contiguous
                weights = weights[first:last]
                lo, hi = lo + first, lo + last
        j = np.arange(lo, hi, dtype=np.float64)
        p = (j + 0.5) * (n / m) - 0.5  # continuous input index of each output centre
        coords = (2.0 * (p - rel) + 1.0) / window - 1.0
        result.append(AxisWindow(a, lo, hi, coords, np.asarray(weights, dtype=np.float64)))
    return pad_lo, pad_hi, result


def published_axis_windows(n: int, scale: float, window: int, stride: int) -> tuple[int, int, int, list[AxisWindow]]:
    """Padding (before, after), output size and the windows along one axis of ``n`` input voxels at
    ``scale`` in the published index arithmetic (see the module docstring)."""
    n, scale = int(n), float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"bad scale {scale!r}")
    padded = max(n, window)
    pad_lo = (padded - n) // 2
    pad_hi = padded - n - pad_lo
    m = published_size(n, scale)
    cells = max(1, int(window * scale))  # output cells of one window's own grid
    crop = int(pad_lo * scale)  # first output voxel of the content on the padded axis's output
    starts = window_starts(padded, window, stride, spread=False)
    offsets = [int(a * scale) - crop for a in starts]  # output voxel of each window's cell 0
    lo = [min(max(o, 0), m) for o in offsets]
    hi = [min(max(o + cells, 0), m) for o in offsets]
    # cover what the published arithmetic leaves uncovered: continue the grid of the window before a gap
    covered = 0
    for k in range(len(starts)):
        nxt = lo[k + 1] if k + 1 < len(starts) else m
        covered = max(covered, hi[k])
        if nxt > covered:
            hi[k] = nxt
            covered = nxt
    result = []
    for a, o, j0, j1 in zip(starts, offsets, lo, hi, strict=False):
        k = np.arange(j0, j1, dtype=np.float64) - o
        coords = (2.0 * k + 1.0) / cells - 1.0
        result.append(AxisWindow(a, j0, max(j0, j1), coords, np.ones(max(0, j1 - j0))))
    return pad_lo, pad_hi, m, result


def plan_windows(
    in_shape: Sequence[int], out_shape: Sequence[int], window: int, stride: int, *, spread: bool,
    scheme: str = "published", margin: float | None = None, scales: Sequence[float] | None = None,
) -> WindowPlan:
    """Plan the windows of a volume; windows that decode no output voxel are dropped.

    ``scales`` (``v_in / v_out`` per axis): use the published index arithmetic (faithful mode;
    ``scheme="published"``, ``spread=False``, and ``out_shape`` must be ``int(N * s)``).
    """
    if scales is not None:
        if scheme != "published" or spread:
            raise ValueError("the published index arithmetic needs scheme='published' and spread=False")
        axes = [published_axis_windows(int(n), float(s), window, stride)
                for n, s in zip(in_shape, scales, strict=False)]
        if tuple(m for _, _, m, _ in axes) != tuple(int(m) for m in out_shape):
            raise ValueError(f"output shape {tuple(out_shape)} is not the published int(N * s) "
                             f"{tuple(m for _, _, m, _ in axes)} for scales {tuple(scales)}")
        per_axis = [(lo, hi, w) for lo, hi, _, w in axes]
    else:
        per_axis = [axis_windows(int(n), int(m), window, stride, spread=spread, scheme=scheme, margin=margin)
                    for n, m in zip(in_shape, out_shape, strict=False)]
    pads = tuple((lo, hi) for lo, hi, _ in per_axis)
    windows = [
        Window(combo)  # type: ignore[arg-type]
        for combo in itertools.product(*(w for _, _, w in per_axis))
        if all(a.out_hi > a.out_lo for a in combo)
    ]
    return WindowPlan(
        window=int(window),
        in_shape=tuple(int(n) for n in in_shape),  # type: ignore[arg-type]
        out_shape=tuple(int(m) for m in out_shape),  # type: ignore[arg-type]
        pad=pads,  # type: ignore[arg-type]
        windows=windows,
    )
