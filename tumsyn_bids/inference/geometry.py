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

    @property
    def factors(self) -> np.ndarray:
        """Input voxels per output voxel along each axis (``N / M``)."""
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
        n, m = self.in_shape[axis], self.out_shape[axis]
        return (np.arange(m) + 0.5) * (n / m) - 0.5

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
        )


def output_grid(
    in_shape: Sequence[int], affine: np.ndarray, voxel_size: float | Sequence[float] | None = None
) -> OutputGrid:
    """The output grid for ``voxel_size`` (mm, scalar or per array axis; None keeps the input grid)."""
    in_shape = tuple(int(n) for n in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise DataError(f"expected a 3D image shape, got {in_shape}")
    affine = np.asarray(affine, dtype=np.float64)
    v_in = voxel_sizes(affine)
    if voxel_size is None:
        out_shape = in_shape
    else:
        v_out = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()
        if not np.all(np.isfinite(v_out)) or np.any(v_out <= 0):
            raise UsageError(f"target voxel size must be positive, got {np.ravel(voxel_size).tolist()}")
        out_shape = tuple(
            max(1, int(np.floor(n * vi / vo + 0.5))) for n, vi, vo in zip(in_shape, v_in, v_out)
        )
    f = np.asarray(in_shape, float) / np.asarray(out_shape, float)
    s = np.eye(4)
    s[:3, :3] = np.diag(f)
    s[:3, 3] = 0.5 * f - 0.5
    out_affine = affine @ s if out_shape != in_shape else affine.copy()
    return OutputGrid(in_shape, out_shape, affine.copy(), out_affine)  # type: ignore[arg-type]
