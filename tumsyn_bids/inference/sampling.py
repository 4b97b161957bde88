"""Trilinear sampling of a window's feature map on a separable (outer-product) query grid.

The queries of a window are the outer product of three 1D coordinate vectors (:mod:`.tiling`),
so trilinear interpolation with ``grid_sample`` semantics (``align_corners=False``, zero padding)
factorises into three small interpolation matrices applied one axis at a time with matrix
products. That gives the same numbers as ``grid_sample`` (to float rounding) at a fraction of
its cost on CPUs, where the gather-based ``grid_sample`` kernel dominates decoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def interpolation_matrix(coords: np.ndarray, size: int) -> np.ndarray:
    """(m, size) linear-interpolation weights of normalised ``coords`` over ``size`` cells.

    ``align_corners=False``: cell ``i`` has its centre at ``-1 + (2 i + 1) / size``; samples
    between the outer centres and the edges blend with zero (zero padding), as grid_sample does.
    """
    u = ((np.asarray(coords, np.float64) + 1.0) * size - 1.0) / 2.0
    i0 = np.floor(u).astype(np.int64)
    frac = u - i0
    mat = np.zeros((len(u), size))
    rows = np.arange(len(u))
    for idx, w in ((i0, 1.0 - frac), (i0 + 1, frac)):
        ok = (idx >= 0) & (idx < size)
        mat[rows[ok], idx[ok]] += w[ok]
    return mat


def separable_sample(feat: "torch.Tensor", mats: Sequence["torch.Tensor"]) -> "torch.Tensor":
    """Features of ``feat (1, C, D, H, W)`` at the outer-product grid of ``mats`` -> (m0*m1*m2, C).

    ``mats`` are (m0, D), (m1, H), (m2, W) interpolation matrices; rows come out in C order
    (index ``(i * m1 + j) * m2 + k``), like ``torch.meshgrid(..., indexing="ij")`` flattened.
    An axis whose matrix is a run of identity rows (queries on the feature grid, as in a slab of a
    same-voxel-size window) is sliced instead of multiplied.
    """
    a0, a1, a2 = mats
    _, c, d, h, w = feat.shape
    t = feat[0].permute(1, 2, 3, 0)  # (D, H, W, C); a free view when feat is channels-last
    s0, s1, s2 = (_identity_rows(m) for m in mats)
    m0, m1 = a0.shape[0], a1.shape[0]
    t = t[s0] if s0 is not None else (a0 @ t.reshape(d, h * w * c)).reshape(m0, h, w, c)
    t = t[:, s1] if s1 is not None else (a1 @ t.reshape(m0, h, w * c)).reshape(m0, m1, w, c)
    t = t[:, :, s2] if s2 is not None else a2 @ t.reshape(m0 * m1, w, c)
    return t.reshape(-1, c)


def _identity_rows(mat: "torch.Tensor") -> slice | None:
    """``slice(k, k + m)`` when the (m, n) matrix equals rows k..k+m of the n x n identity, else None."""
    import torch

    m, n = mat.shape
    if m > n:
        return None
    k = int(torch.argmax(mat[0]))
    if k + m > n:
        return None
    eye = torch.eye(n, dtype=mat.dtype, device=mat.device)[k:k + m]
    return slice(k, k + m) if bool(torch.allclose(mat, eye, rtol=0.0, atol=1e-6)) else None
