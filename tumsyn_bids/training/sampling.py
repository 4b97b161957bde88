"""Training samples in the published recipe: random HR cube, LR input, query points.

An HR cube of ``round(lr_size * s_i)`` voxels per axis is cut at the same place from two
co-registered images; each is degraded to an ``lr_size``^3 LR input (anti-alias blur, or a
slab average for thick slices, then a cubic-spline zoom); ``queries`` random cell centres of the
HR grid in [-1,1]^3 (array axis order, the contract of ``SynthesisNet.decode``) carry the HR
intensities as targets. numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scale:
    """Per-axis ratio of LR to HR voxel size, and whether one axis is a thick-slice axis."""

    factors: tuple[float, float, float]
    thick_axis: int | None = None


def draw_scale(rng: np.random.Generator, scale_min: float, scale_max: float,
               thick_prob: float, thick_max: float) -> Scale:
    """An isotropic scale on a 0.1 grid in [min, max], or (with ``thick_prob``) one thick axis."""
    if rng.random() < thick_prob:
        axis = int(rng.integers(3))
        s = float(np.round(rng.uniform(2.0, thick_max), 1))
        factors = [1.0, 1.0, 1.0]
        factors[axis] = s
        return Scale(tuple(factors), axis)  # type: ignore[arg-type]
    steps = int(round((scale_max - scale_min) * 10))
    s = scale_min + 0.1 * int(rng.integers(steps + 1)) if steps > 0 else scale_min
    return Scale((s, s, s))


def hr_shape(lr_size: int, scale: Scale) -> tuple[int, int, int]:
    """HR cube shape for an LR edge and a scale."""
    return tuple(max(lr_size, int(round(lr_size * f))) for f in scale.factors)  # type: ignore[return-value]


def random_corner(shape: tuple[int, ...], size: tuple[int, ...], rng: np.random.Generator,
                  mask: np.ndarray | None = None) -> tuple[int, ...]:
    """Corner of a random ``size`` window inside ``shape``, centred near a mask voxel when given."""
    if mask is not None and np.any(mask):
        idx = np.flatnonzero(mask)
        centre = np.unravel_index(idx[int(rng.integers(idx.size))], shape)
        return tuple(int(np.clip(c - s // 2, 0, max(n - s, 0))) for c, s, n in zip(centre, size, shape, strict=True))
    return tuple(int(rng.integers(max(n - s, 0) + 1)) for s, n in zip(size, shape, strict=True))


def crop(volume: np.ndarray, corner: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """Window of ``size`` at ``corner``, zero-padded where it leaves the volume."""
    out = np.zeros(size, dtype=np.float32)
    src = tuple(slice(c, min(c + s, n)) for c, s, n in zip(corner, size, volume.shape, strict=True))
    dst = tuple(slice(0, sl.stop - sl.start) for sl in src)
    out[dst] = volume[src]
    return out


def degrade(cube: np.ndarray, lr_size: int, scale: Scale) -> np.ndarray:
    """LR version of an HR cube: blur (Gaussian, or slab average on a thick axis), then zoom."""
    from scipy.ndimage import gaussian_filter, uniform_filter1d, zoom

    blurred = cube
    if scale.thick_axis is not None:
        width = max(1, int(round(scale.factors[scale.thick_axis])))
        blurred = uniform_filter1d(cube, width, axis=scale.thick_axis, mode="constant")
    else:
        sigma = [0.4 * (f - 1.0) if f > 1.05 else 0.0 for f in scale.factors]
        if any(sigma):
            blurred = gaussian_filter(cube, sigma, mode="constant")
    factors = [lr_size / n for n in cube.shape]
    lr = zoom(blurred, factors, order=3, mode="nearest", grid_mode=True)
    lr = lr[:lr_size, :lr_size, :lr_size]
    return np.clip(lr, 0.0, 1.0).astype(np.float32)


def cell_centres(shape: tuple[int, ...]) -> np.ndarray:
    """(prod(shape), 3) cell-centre coordinates of a grid in [-1,1], array axis order."""
    axes = [(2.0 * np.arange(n) + 1.0) / n - 1.0 for n in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return grid.reshape(-1, len(shape)).astype(np.float32)


def sample_queries(shape: tuple[int, ...], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random HR voxels (flat indices, without replacement when possible) and their coordinates."""
    total = int(np.prod(shape))
    flat = rng.choice(total, size=n, replace=n > total)
    idx = np.stack(np.unravel_index(flat, shape), axis=-1).astype(np.float32)
    coords = (2.0 * idx + 1.0) / np.asarray(shape, np.float32) - 1.0
    return flat, coords.astype(np.float32)


@dataclass
class PairSample:
    """One training pair: LR inputs of both images, HR targets at the same queries, both prompts."""

    lr_src: np.ndarray
    lr_tgt: np.ndarray
    coords: np.ndarray  # (Q, 3)
    hr_src: np.ndarray  # (Q,)
    hr_tgt: np.ndarray  # (Q,)
    prompt_src: str
    prompt_tgt: str
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)


def make_pair_sample(src: np.ndarray, tgt: np.ndarray, prompt_src: str, prompt_tgt: str,
                     mask: np.ndarray | None, lr_size: int, scale: Scale, queries: int,
                     rng: np.random.Generator) -> PairSample:
    """Cut the same HR cube from both images and build one :class:`PairSample`."""
    size = hr_shape(lr_size, scale)
    corner = random_corner(src.shape, size, rng, mask)
    cube_src, cube_tgt = crop(src, corner, size), crop(tgt, corner, size)
    flat, coords = sample_queries(size, queries, rng)
    return PairSample(
        lr_src=degrade(cube_src, lr_size, scale), lr_tgt=degrade(cube_tgt, lr_size, scale),
        coords=coords, hr_src=cube_src.ravel()[flat], hr_tgt=cube_tgt.ravel()[flat],
        prompt_src=prompt_src, prompt_tgt=prompt_tgt, scale=scale.factors,
    )
