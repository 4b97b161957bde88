"""Output grids for any target voxel size, and the exact output affine (numpy only).

Conventions (all per array axis ``d``):

* ``N`` input voxels of size ``v_in`` (the norm of affine column ``d``, so oblique affines work),
  ``M = round(N * v_in / v_out)`` output voxels (at least 1).
* The output grid covers the same field of view: the outer edges of the first and last output
  voxels coincide with those of the input. The effective output voxel size is therefore
  ``N * v_in / M`` (equal to the request whenever ``N * v_in / v_out`` is an integer).
* Output voxel ``j`` has its centre at the continuous input index ``p_j = (j + 0.5) * N / M - 0.5``;
  the output affine is ``A_in @ S`` with ``S = [[diag(N/M), 0.5 * N/M - 0.5], [0, 1]]``.
  A scale of 1 (``M == N``) gives ``S = I``: the input grid exactly.

Published index arithmetic (``published=True``, faithful mode): the published TUMSyn demo takes
the scale ``s = v_in / v_out`` per axis (``v_in`` to 1e-6 mm, as a header states it) and
truncates: ``M = int(N * s)`` (``round`` above), and its windows' output grids are placed at
``int(start * s)`` (:mod:`.tiling`). Its output voxels then
sit on the regular grid of spacing ``1 / s`` input voxels that starts at the input's first outer
edge: the affine is ``A_in @ S`` with ``S = [[diag(1/s), 0.5/s - 0.5], [0, 1]]``, the requested
voxel size exactly, and the same affine as above whenever ``N * s`` is an integer. (The published
writer keeps the input's origin instead, which shifts the image by half an output voxel at any
scale other than 1; that is not reproduced.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tumsyn_bids.errors import DataError, UsageError


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size per array axis: the norms of the affine's first three columns."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise DataError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(sizes <= 0):
        raise DataError(f"affine has a zero-length voxel axis (voxel sizes {sizes.round(4).tolist()})")
    return sizes


@dataclass(frozen=True)
class OutputGrid:
    """An output grid over the same field of view as an input grid."""

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    in_affine: np.ndarray
    affine: np.ndarray  # output affine (4, 4)
    # the requested scale ``v_in / v_out`` per axis when the grid follows the published index
    # arithmetic (``M = int(N * s)``, spacing ``1 / s``); None for the exact grid (``M = round(N * s)``)
    scale: tuple[float, float, float] | None = None

    @property
    def factors(self) -> np.ndarray:
        """Input voxels per output voxel along each axis (``N / M``; ``1 / s`` for a published grid)."""
        if self.scale is not None:
            return 1.0 / np.asarray(self.scale, float)
        return np.asarray(self.in_shape, float) / np.asarray(self.out_shape, float)

    @property
    def scales(self) -> np.ndarray:
        """Output voxels per input voxel along each axis (``M / N``)."""
        return np.asarray(self.out_shape, float) / np.asarray(self.in_shape, float)

    @property
    def voxel_size(self) -> np.ndarray:
        """Effective output voxel size in mm per array axis."""
        return voxel_sizes(self.affine)

    def centres_in_input(self, axis: int) -> np.ndarray:
        """Continuous input index of each output voxel centre along ``axis``."""
        f = float(self.factors[axis])
        return (np.arange(self.out_shape[axis]) + 0.5) * f - 0.5

    def permuted(self, order: Sequence[int]) -> "OutputGrid":
        """The same grid with array axes permuted (e.g. (2, 1, 0) for SimpleITK order)."""
        order = list(order)
        perm = np.eye(4)
        perm[:3, :3] = np.eye(3)[:, order]
        return OutputGrid(
            in_shape=tuple(self.in_shape[i] for i in order),  # type: ignore[arg-type]
            out_shape=tuple(self.out_shape[i] for i in order),  # type: ignore[arg-type]
            in_affine=self.in_affine @ perm,
            affine=self.affine @ perm,
            scale=None if self.scale is None else tuple(self.scale[i] for i in order),  # type: ignore[arg-type]
        )


def output_grid(
    in_shape: Sequence[int], affine: np.ndarray, voxel_size: float | Sequence[float] | None = None,
    *, published: bool = False,
) -> OutputGrid:
    """The output grid for ``voxel_size`` (mm, scalar or per array axis; None keeps the input grid).

    ``published``: the published demo's truncating index arithmetic (see the module docstring).
    """
    in_shape = tuple(int(n) for n in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise DataError(f"expected a 3D image shape, got {in_shape}")
    affine = np.asarray(affine, dtype=np.float64)
    v_in = voxel_sizes(affine)
    if voxel_size is None:
        v_out = v_in
    else:
        v_out = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()
        if not np.all(np.isfinite(v_out)) or np.any(v_out <= 0):
            raise UsageError(f"target voxel size must be positive, got {np.ravel(voxel_size).tolist()}")
    if published:
        # input voxel sizes to 1e-6 mm (as written in the header), so that float noise in the norms
        # of an oblique affine cannot move a truncation (1.4999999999999998 * 60 -> 89)
        v_hdr = np.where(v_in >= 1e-3, np.round(v_in, 6), v_in)
        scale = tuple(1.0 if voxel_size is None else float(vi) / float(vo)
                      for vi, vo in zip(v_hdr, v_out, strict=False))
        out_shape = tuple(published_size(n, s) for n, s in zip(in_shape, scale, strict=False))
        f = 1.0 / np.asarray(scale, float)
        s = np.eye(4)
        s[:3, :3] = np.diag(f)
        s[:3, 3] = 0.5 * f - 0.5
        out_affine = affine @ s if any(v != 1.0 for v in scale) else affine.copy()
        return OutputGrid(in_shape, out_shape, affine.copy(), out_affine, scale)  # type: ignore[arg-type]
    if voxel_size is None:
        out_shape = in_shape
    else:
        out_shape = tuple(
            max(1, int(np.floor(n * vi / vo + 0.5))) for n, vi, vo in zip(in_shape, v_in, v_out, strict=False)
        )
    f = np.asarray(in_shape, float) / np.asarray(out_shape, float)
    s = np.eye(4)
    s[:3, :3] = np.diag(f)
    s[:3, 3] = 0.5 * f - 0.5
    out_affine = affine @ s if out_shape != in_shape else affine.copy()
    return OutputGrid(in_shape, out_shape, affine.copy(), out_affine)  # type: ignore[arg-type]


def published_size(n: int, scale: float) -> int:
    """Output voxels of an axis of ``n`` input voxels at ``scale`` in the published arithmetic:
    ``int(n * scale)``, a truncated float product (at least 1)."""
    return max(1, int(int(n) * float(scale)))
