"""Separable trilinear sampling equals grid_sample (align_corners=False, zero padding)."""

from __future__ import annotations

import numpy as np
import torch

from tests.inference.conftest import sample
from tumsyn_bids.inference.sampling import interpolation_matrix, separable_sample


def test_separable_sampling_matches_grid_sample():
    torch.manual_seed(0)
    feat = torch.randn(1, 5, 7, 6, 9).contiguous(memory_format=torch.channels_last_3d)
    axes = [np.linspace(-1.0, 1.0, 11), np.array([-0.97, -0.5, 0.01, 0.93]), (np.arange(13) + 0.5) / 6.5 - 1.0]
    mats = [torch.as_tensor(interpolation_matrix(c, n), dtype=torch.float32)
            for c, n in zip(axes, (7, 6, 9), strict=False)]
    got = separable_sample(feat, mats)
    grid = torch.stack(torch.meshgrid(*(torch.as_tensor(c, dtype=torch.float32) for c in axes), indexing="ij"), -1)
    ref = sample(feat, grid.reshape(1, -1, 3), padding="zeros")[0]
    assert got.shape == ref.shape == (11 * 4 * 13, 5)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_interpolation_matrix_rows():
    mat = interpolation_matrix(np.array([-1.0 + 1 / 4, 0.0, 1.0]), 4)  # first centre, middle, outer edge
    np.testing.assert_allclose(mat[0], [1, 0, 0, 0])
    np.testing.assert_allclose(mat[1], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(mat[2], [0, 0, 0, 0.5])  # half-way to the zero padding


def test_queries_on_the_feature_grid_skip_the_products_and_match_grid_sample():
    import torch

    from tumsyn_bids.inference.sampling import interpolation_matrix, separable_sample
    from tumsyn_bids.models.decoder import sample_features

    feat = torch.randn(1, 5, 6, 7, 8)
    axes = [(-1 + (2 * np.arange(n) + 1) / n) for n in (6, 7, 8)]  # the cell centres
    mats = [torch.as_tensor(interpolation_matrix(a, n), dtype=torch.float32)
            for a, n in zip(axes, (6, 7, 8), strict=False)]
    fast = separable_sample(feat, mats)
    grid = torch.stack(torch.meshgrid(*[torch.as_tensor(a, dtype=torch.float32) for a in axes], indexing="ij"), -1)
    ref = sample_features(feat, grid.reshape(1, -1, 3))[0]
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_slabs_of_on_grid_axes_are_sliced_and_mixed_axes_still_match_grid_sample():
    """A slab of an on-grid window (rows k..k+m of the identity) is sliced, not multiplied, and any
    mix of on-grid and interpolated axes equals grid_sample."""
    from tumsyn_bids.inference.sampling import _identity_rows
    from tumsyn_bids.models.decoder import sample_features

    torch.manual_seed(1)
    feat = torch.randn(1, 4, 6, 7, 8).contiguous(memory_format=torch.channels_last_3d)
    centres = [(-1 + (2 * np.arange(n) + 1) / n) for n in (6, 7, 8)]
    axes = [centres[0][2:5], np.linspace(-0.9, 0.9, 5), centres[2]]  # a slab, interpolated, on-grid
    mats = [torch.as_tensor(interpolation_matrix(a, n), dtype=torch.float32)
            for a, n in zip(axes, (6, 7, 8), strict=False)]
    assert _identity_rows(mats[0]) == slice(2, 5) and _identity_rows(mats[1]) is None
    assert _identity_rows(mats[2]) == slice(0, 8)
    got = separable_sample(feat, mats)
    grid = torch.stack(torch.meshgrid(*[torch.as_tensor(a, dtype=torch.float32) for a in axes], indexing="ij"), -1)
    ref = sample_features(feat, grid.reshape(1, -1, 3))[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
