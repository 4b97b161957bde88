"""HR cube / LR input / query sampling of the stage-2 recipe."""

from __future__ import annotations

import numpy as np
import pytest

from tumsyn_bids.training.sampling import (
    Scale,
    cell_centres,
    crop,
    degrade,
    draw_scale,
    hr_shape,
    make_pair_sample,
    sample_queries,
)


def test_cell_centres_are_symmetric_in_unit_cube():
    c = cell_centres((4, 2, 3))
    assert c.shape == (24, 3)
    assert np.allclose(sorted(set(c[:, 0].round(4))), [-0.75, -0.25, 0.25, 0.75])
    assert np.allclose(c.mean(0), 0.0) and c.min() > -1 and c.max() < 1


def test_queries_point_at_the_voxels_they_carry():
    rng = np.random.default_rng(0)
    shape = (6, 5, 4)
    flat, coords = sample_queries(shape, 50, rng)
    idx = np.stack(np.unravel_index(flat, shape), -1)
    back = np.rint(((coords + 1.0) * np.array(shape) - 1.0) / 2.0)
    assert np.array_equal(back, idx)
    assert len(set(flat.tolist())) == 50  # without replacement


def test_draw_scale_ranges():
    rng = np.random.default_rng(1)
    scales = [draw_scale(rng, 1.0, 3.0, 0.3, 5.0) for _ in range(300)]
    iso = [s for s in scales if s.thick_axis is None]
    thick = [s for s in scales if s.thick_axis is not None]
    assert iso and thick
    assert all(1.0 <= s.factors[0] <= 3.0 and len(set(s.factors)) == 1 for s in iso)
    assert all(sorted(s.factors)[:2] == [1.0, 1.0] and 2.0 <= max(s.factors) <= 5.0 for s in thick)


def test_degrade_makes_lr_cube_and_blurs_thick_axis():
    rng = np.random.default_rng(2)
    cube = rng.random((16, 16, 48)).astype(np.float32)
    scale = Scale((1.0, 1.0, 3.0), thick_axis=2)
    assert hr_shape(16, scale) == (16, 16, 48)
    lr = degrade(cube, 16, scale)
    assert lr.shape == (16, 16, 16) and lr.min() >= 0 and lr.max() <= 1
    # averaging three slices lowers variance along the thick axis, not in-plane content
    assert lr.std() < cube.std()


def test_crop_pads_outside():
    vol = np.ones((5, 5, 5), np.float32)
    out = crop(vol, (3, 3, 3), (4, 4, 4))
    assert out.shape == (4, 4, 4) and out.sum() == 8


def test_pair_sample_uses_the_same_cube_for_both_images():
    rng = np.random.default_rng(3)
    a = rng.random((40, 40, 40)).astype(np.float32)
    b = 1.0 - a
    s = make_pair_sample(a, b, "src", "tgt", None, 10, Scale((2.0, 2.0, 2.0)), 200, rng)
    assert s.lr_src.shape == (10, 10, 10) and s.coords.shape == (200, 3)
    assert np.allclose(s.hr_src + s.hr_tgt, 1.0)
    assert (s.prompt_src, s.prompt_tgt) == ("src", "tgt")
    with pytest.raises(AssertionError):
        assert np.allclose(s.hr_src, s.hr_src[0])
