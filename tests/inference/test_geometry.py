"""Output grids: same field of view for any voxel size, exact affines, oblique input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tumsyn_bids.errors import DataError, UsageError
from tumsyn_bids.inference.geometry import output_grid, voxel_sizes


def _corners(shape, affine) -> np.ndarray:
    """World coordinates of the 8 outer corners of the grid (voxel edges, not centres)."""
    pts = np.array([[-0.5 if c == 0 else n - 0.5 for c, n in zip(combo, shape, strict=False)] + [1.0]
                    for combo in itertools.product((0, 1), repeat=3)])
    return (affine @ pts.T).T[:, :3]


def _affine(voxel, rotation=None, origin=(-90.0, -126.0, -72.0)) -> np.ndarray:
    a = np.eye(4)
    rot = np.eye(3) if rotation is None else rotation
    a[:3, :3] = rot @ np.diag(voxel)
    a[:3, 3] = origin
    return a


def test_super_resolution_1mm_to_half_mm_keeps_extent():
    shape, aff = (20, 24, 18), _affine((1.0, 1.0, 1.0))
    grid = output_grid(shape, aff, 0.5)
    assert grid.out_shape == (40, 48, 36)
    np.testing.assert_allclose(grid.voxel_size, 0.5)
    np.testing.assert_allclose(_corners(grid.out_shape, grid.affine), _corners(shape, aff), atol=1e-9)
    # the first output centre sits a quarter voxel inside the first input voxel (origin shifted)
    np.testing.assert_allclose(grid.affine[:3, 3], aff[:3, 3] - 0.25)
    # output voxels 2j and 2j+1 straddle input voxel j's centre symmetrically
    centres = grid.centres_in_input(0)
    np.testing.assert_allclose((centres[0::2] + centres[1::2]) / 2, np.arange(20))


def test_anisotropic_1x1x3_to_1mm_scales_the_right_axis():
    shape, aff = (16, 20, 8), _affine((1.0, 1.0, 3.0))
    grid = output_grid(shape, aff, 1.0)
    assert grid.out_shape == (16, 20, 24)
    np.testing.assert_allclose(grid.voxel_size, 1.0)
    np.testing.assert_allclose(grid.affine[:3, :2], aff[:3, :2])  # in-plane axes untouched
    np.testing.assert_allclose(grid.affine[:3, 2], aff[:3, 2] / 3)
    np.testing.assert_allclose(_corners(grid.out_shape, grid.affine), _corners(shape, aff), atol=1e-9)
    assert grid.affine[2, 3] == pytest.approx(aff[2, 3] - 1.0)  # first 1 mm slice centre 1 mm below


@pytest.mark.parametrize("target", [0.7, (1.3, 0.9, 2.0)])
def test_oblique_affine_keeps_directions_and_extent(target):
    rot = Rotation.from_euler("xyz", [17, -23, 41], degrees=True).as_matrix()
    shape, aff = (21, 17, 9), _affine((0.9, 1.1, 2.5), rot, origin=(12.0, -40.0, 7.5))
    np.testing.assert_allclose(voxel_sizes(aff), (0.9, 1.1, 2.5))
    grid = output_grid(shape, aff, target)
    expected = tuple(int(np.floor(n * v / t + 0.5))
                     for n, v, t in zip(shape, (0.9, 1.1, 2.5), np.broadcast_to(target, 3), strict=False))
    assert grid.out_shape == expected
    np.testing.assert_allclose(_corners(grid.out_shape, grid.affine), _corners(shape, aff), atol=1e-9)
    # directions unchanged, sizes = field of view / voxel count (within rounding of the request)
    np.testing.assert_allclose(grid.affine[:3, :3] / grid.voxel_size, aff[:3, :3] / voxel_sizes(aff), atol=1e-12)
    np.testing.assert_allclose(grid.voxel_size, np.asarray(shape) * (0.9, 1.1, 2.5) / np.asarray(expected))
    assert np.all(np.abs(grid.voxel_size - np.broadcast_to(target, 3))
                  <= np.broadcast_to(target, 3) / np.asarray(expected))


def test_scale_one_keeps_input_grid_exactly():
    rot = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    aff = _affine((1.2, 1.2, 1.2), rot)
    for target in (None, 1.2, (1.2, 1.2, 1.2)):
        grid = output_grid((15, 16, 17), aff, target)
        assert grid.out_shape == (15, 16, 17)
        assert np.array_equal(grid.affine, aff)


def test_permuted_grid_matches_transposed_array():
    aff = _affine((1.0, 2.0, 3.0))
    grid = output_grid((10, 12, 14), aff, 1.0)
    zyx = grid.permuted((2, 1, 0))
    assert zyx.in_shape == (14, 12, 10) and zyx.out_shape == (42, 24, 10)
    np.testing.assert_allclose(zyx.scales, grid.scales[::-1])
    # voxel (i,j,k) of the zyx grid is voxel (k,j,i) of the original
    np.testing.assert_allclose(zyx.affine @ [3, 5, 7, 1], grid.affine @ [7, 5, 3, 1])


def test_bad_voxel_sizes_are_refused():
    aff = _affine((1.0, 1.0, 1.0))
    for bad in (0.0, -1.0, (1.0, 0.0, 1.0), float("nan")):
        with pytest.raises(UsageError, match="voxel size"):
            output_grid((8, 8, 8), aff, bad)
    degenerate = aff.copy()
    degenerate[:3, 1] = 0.0
    with pytest.raises(DataError, match="zero-length"):
        output_grid((8, 8, 8), degenerate, 1.0)
