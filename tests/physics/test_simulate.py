"""simulate_image / simulate_subject: contrast ordering, prompts, pairing, realism, seeds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tumsyn_bids.physics import (
    SpatialTransform,
    add_rician_noise,
    bias_field,
    deform_phantom,
    draw_tissue_properties,
    random_transform,
    render,
    resolve_protocol,
    simulate_image,
    simulate_subject,
    thick_slice,
    tissue_signals,
)
from tumsyn_bids.physics.realism import sampling_coordinates, warp
from tumsyn_bids.physics.tissues import TissueClass, kind_ranges
from tumsyn_bids.prompts import parse_prompt

BRAIN = [TissueClass("wm", "wm"), TissueClass("gm", "gm"), TissueClass("csf", "csf")]


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_contrast_ordering_over_random_tissue_draws(field):
    rng = np.random.default_rng(1)
    for _ in range(300):
        props = draw_tissue_properties(BRAIN, field, rng)
        wm, gm, csf = tissue_signals(props, resolve_protocol("T1w", field))
        assert wm > gm > csf
        wm, gm, csf = tissue_signals(props, resolve_protocol("T2w", field))
        assert csf > gm > wm
        wm, gm, csf = tissue_signals(props, resolve_protocol("FLAIR", field))
        assert csf < 0.8 * min(wm, gm)  # CSF suppressed below brain tissue


def test_pdw_has_the_smallest_spread():
    rng = np.random.default_rng(2)
    for field in (1.5, 3.0):
        for _ in range(20):
            props = draw_tissue_properties(BRAIN, field, rng)
            spread = {}
            for c in ("T1w", "T2w", "FLAIR", "PDw", "T2starw"):
                s = tissue_signals(props, resolve_protocol(c, field))
                spread[c] = s.std() / s.mean()
            assert min(spread, key=spread.get) == "PDw"


def test_t2w_contrast_changes_with_te_as_physics_says(mni4):
    rng = np.random.default_rng(0)
    props = draw_tissue_properties(mni4, 1.5, rng)
    ratios = []
    for te in (80.0, 100.0, 120.0):
        s = tissue_signals(props, resolve_protocol("T2w", 1.5, te_ms=te))
        ratios.append(s[2] / s[0])  # CSF / WM
    assert ratios[0] < ratios[1] < ratios[2]


def test_tissue_draws_stay_in_range_and_7t_extrapolates():
    rng = np.random.default_rng(3)
    props = draw_tissue_properties(BRAIN, 3.0, rng)
    for i, c in enumerate(BRAIN):
        lo, hi = kind_ranges(c.kind, 3.0)["t1"]
        assert lo <= props.t1[i] <= hi
    wm7 = kind_ranges("wm", 7.0)["t1"]
    wm3 = kind_ranges("wm", 3.0)["t1"]
    assert wm7[0] > wm3[0] and wm7[1] > wm3[1]


def test_rendered_mni_images_order_tissues(mni4):
    from tumsyn_bids.physics.tissues import nominal_tissue_properties

    props = nominal_tissue_properties(mni4, 3.0)
    pure = {name: mni4.fractions(name) > 0.9 for name in ("wm", "gm", "csf")}
    for contrast, order in (("T1w", ("wm", "gm", "csf")), ("T2w", ("csf", "gm", "wm"))):
        image = render(mni4, props, resolve_protocol(contrast, 3.0))
        means = [image[pure[n]].mean() for n in order]
        assert means[0] > means[1] > means[2]


def test_simulate_image_prompt_mask_and_ground_truth(mni4):
    rng = np.random.default_rng(5)
    img = simulate_image(mni4, "FLAIR", rng, voxel_size=4.0, field_strength=1.5, snr=20.0)
    assert img.data.dtype == np.float32 and img.data.shape == img.mask.shape == img.ground_truth.shape
    assert np.allclose(np.sqrt((img.affine[:3, :3] ** 2).sum(0)), 4.0)
    p = img.prompt
    assert (p.modality, p.field_strength, p.tr_ms, p.te_ms, p.ti_ms) == ("FLAIR", 1.5, 9000.0, 110.0, 2200.0)
    assert p.voxel_size == (4.0, 4.0, 4.0) and p.sex in ("M", "F") and 20 <= p.age <= 80
    assert parse_prompt(p.text()) == p
    assert 0.15 < img.mask.mean() < 0.6
    assert not np.array_equal(img.data, img.ground_truth)  # noise and bias were added
    # noise level: background (air) of the noisy image is Rayleigh with sigma = brain mean / SNR
    air = img.ground_truth == 0
    sigma = img.ground_truth[img.mask].mean() / 20.0
    assert img.data[air].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.35)


def test_simulate_subject_pairs_contrasts_on_one_grid(mni4):
    rng = np.random.default_rng(6)
    out = simulate_subject(mni4, ["T1w", "T2w", resolve_protocol("T2w", 3.0, te_ms=300.0)], rng, voxel_size=4.0)
    assert list(out) == ["T1w", "T2w", "T2w_2"]
    t1, t2 = out["T1w"], out["T2w"]
    np.testing.assert_array_equal(t1.mask, t2.mask)
    np.testing.assert_array_equal(t1.affine, t2.affine)
    assert t1.prompt.age == t2.prompt.age and t1.prompt.modality == "T1w" and t2.prompt.flip_angle == "T2var"
    assert out["T2w_2"].prompt.te_ms == 300.0


def test_identical_seeds_identical_volumes_different_seeds_differ(mni4):
    a = simulate_image(mni4, "T1w", np.random.default_rng(7), voxel_size=4.0)
    b = simulate_image(mni4, "T1w", np.random.default_rng(7), voxel_size=4.0)
    c = simulate_image(mni4, "T1w", np.random.default_rng(8), voxel_size=4.0)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
    assert a.prompt == b.prompt
    assert not np.array_equal(a.data, c.data)


def test_skull_strip_zeroes_outside_the_exact_mask(mni4):
    img = simulate_image(mni4, "T2w", np.random.default_rng(9), voxel_size=4.0, skull_strip=True)
    assert (img.data[~img.mask] == 0).all() and (img.data[img.mask] > 0).mean() > 0.99


def test_thick_slices_in_any_axis(mni4):
    for axis in (0, 1, 2):
        img = simulate_image(mni4, "T1w", np.random.default_rng(10), voxel_size=4.0, thick_slice=(axis, 8.0),
                             deform=False, noise=False, bias=False)
        vox = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
        expected = [4.0, 4.0, 4.0]
        expected[axis] = 8.0
        np.testing.assert_allclose(vox, expected)
        assert img.prompt.voxel_size == tuple(expected) and img.slice_thickness == 8.0


def test_thick_slice_function_blurs_only_along_the_slice_axis():
    image = np.zeros((16, 16, 32), dtype=np.float32)
    image[:, :, 16:] = 1.0
    out, affine = thick_slice(image, np.eye(4), axis=2, thickness=4.0)
    assert out.shape == (16, 16, 8) and np.allclose(np.diag(affine)[:3], [1, 1, 4])
    profile = out[8, 8]
    assert profile[0] < 0.01 and profile[-1] > 0.99 and np.all(np.diff(profile) >= -1e-6)
    # slices centred 2 mm from the edge are blurred by the 4 mm slice profile (point sampling: 0 and 1)
    assert 0.05 < profile[3] < 0.5 < profile[4] < 0.95
    assert np.allclose(out[:, :, 0], out[0, 0, 0])  # in-plane unchanged (uniform)


def test_downsampling_keeps_partial_volume_mean(mni4):
    from tumsyn_bids.physics import resample_to_voxel_size

    wm = mni4.fractions("wm")
    coarse, affine = resample_to_voxel_size(wm, mni4.affine, 8.0)
    assert np.allclose(np.sqrt((affine[:3, :3] ** 2).sum(0)), 8.0)
    assert coarse.sum() * 512 == pytest.approx(wm.sum() * 64, rel=0.05)
    assert 0 < coarse.max() < 1.0  # partial volume, no longer pure


def test_bias_field_is_smooth_positive_and_about_unity():
    rng = np.random.default_rng(11)
    field = bias_field((24, 28, 20), rng, strength=0.2)
    assert field.min() > 0.4 and field.max() < 2.0
    assert abs(np.log(field).mean()) < 0.3
    assert np.abs(np.diff(field, axis=0)).max() < 0.25 * (field.max() - field.min())  # smooth, not voxel noise


def test_rician_noise_statistics():
    rng = np.random.default_rng(12)
    image = np.zeros((40, 40, 40), dtype=np.float32)
    image[10:30, 10:30, 10:30] = 100.0
    mask = image > 0
    noisy = add_rician_noise(image, 25.0, rng, mask=mask)
    sigma = 100.0 / 25.0
    assert noisy[~mask].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh
    assert noisy[mask].std() == pytest.approx(sigma, rel=0.05)
    assert noisy.min() >= 0


def test_identity_transform_reproduces_and_deformation_moves(sphere_phantom):
    props = draw_tissue_properties(sphere_phantom, 3.0, np.random.default_rng(0))
    image = render(sphere_phantom, props, resolve_protocol("T2w", 3.0))
    coords = sampling_coordinates(image.shape, sphere_phantom.affine, sphere_phantom.affine,
                                  SpatialTransform(np.eye(4)))
    np.testing.assert_allclose(warp(image, coords), image, atol=1e-6)
    transform = random_transform(np.random.default_rng(1), sphere_phantom.shape, sphere_phantom.affine,
                                 rotation_deg=10, elastic_mm=3.0)
    moved = deform_phantom(sphere_phantom, transform)
    changed = (moved.labels != sphere_phantom.labels).mean()
    assert 0.01 < changed < 0.5
    assert (abs(int(moved.brain_mask.sum()) - int(sphere_phantom.brain_mask.sum()))
            < 0.35 * sphere_phantom.brain_mask.sum())


def test_deforming_the_phantom_equals_deforming_the_rendering(mni4):
    """Rendering is linear in the tissue fractions, so warp(render) == render(warp)."""
    props = draw_tissue_properties(mni4, 3.0, np.random.default_rng(2))
    protocol = resolve_protocol("T1w", 3.0)
    transform = random_transform(np.random.default_rng(3), mni4.shape, mni4.affine)
    coords = sampling_coordinates(mni4.shape, mni4.affine, mni4.affine, transform)
    a = warp(render(mni4, props, protocol), coords)
    b = render(deform_phantom(mni4, transform), props, protocol)
    np.testing.assert_allclose(a, b, atol=1e-5 * float(a.max()))


def test_t1ce_and_swi_approximations_act_on_their_tissues(sphere_phantom):
    from tumsyn_bids.physics import labelmap_phantom
    from tumsyn_bids.physics.tissues import nominal_tissue_properties

    labels = np.zeros((8, 8, 8), dtype=np.int16)
    labels[:4] = 2  # WM
    labels[4:6] = 30  # vessel
    labels[6:] = 13  # pallidum
    ph = labelmap_phantom(labels, np.eye(4), source="small")
    props = nominal_tissue_properties(ph, 3.0)
    t1w = tissue_signals(props, resolve_protocol("T1w", 3.0))
    t1ce = tissue_signals(props, resolve_protocol("T1CE", 3.0))
    wm, vessel, pallidum = ph.class_index("cerebral_wm"), ph.class_index("vessel"), ph.class_index("pallidum")
    assert t1ce[vessel] > 1.3 * t1w[vessel] and t1ce[wm] == pytest.approx(t1w[wm])
    gre = tissue_signals(props, resolve_protocol("T2starw", 3.0, tr_ms=28.0, flip_angle=15.0))
    swi = tissue_signals(props, resolve_protocol("SWI", 3.0))
    assert swi[pallidum] / swi[wm] < gre[pallidum] / gre[wm]
    assert swi[vessel] < 0.2 * gre[vessel]


def test_protocol_field_strength_must_match_the_subject(mni4):
    p = resolve_protocol("T1w", 1.5)
    img = simulate_image(mni4, p, np.random.default_rng(0), voxel_size=4.0, noise=False)
    assert img.prompt.field_strength == 1.5
    with pytest.raises(ValueError, match="1.5 T"):
        simulate_image(mni4, p, np.random.default_rng(0), voxel_size=4.0, field_strength=3.0)
    with pytest.raises(ValueError):
        simulate_image(mni4, replace(p, tr_ms=-1.0), np.random.default_rng(0))


def test_deepbet_finds_the_brain_of_the_demo_head(tmp_path):
    """The demo head (issue 18): deepbet's mask on the demo's sub-01 T1w (same simulator call as
    ``tumsyn simulate --voxel 2 --seed 0``) passes the app's mask check (not loosened) and matches
    the phantom's intracranial mask (benchmarks/demo_heads.py measures 10 seeds at 1 mm)."""
    import nibabel as nib
    import torch

    from tumsyn_bids.anat.brainmask import deepbet_mask, mask_qc
    from tumsyn_bids.physics import mni_phantom
    from tumsyn_bids.physics.bids_writer import DatasetSpec, simulate_dataset

    torch.set_num_threads(1)
    phantom = mni_phantom(2.0)
    simulate_dataset(tmp_path, lambda i: phantom, DatasetSpec(subjects=1, contrasts=["T1w"], voxel_size=2.0, seed=0))
    t1w = tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    truth = np.asarray(nib.load(str(tmp_path / "derivatives/groundtruth/sub-01/anat/sub-01_desc-brain_mask.nii.gz"
                                    )).dataobj) > 0
    mask = deepbet_mask(t1w)
    qc = mask_qc(mask, np.asarray(nib.load(str(t1w)).dataobj, dtype=np.float32), (2.0, 2.0, 2.0), "deepbet")
    assert qc["Warning"] is None, qc
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice >= 0.9, dice
