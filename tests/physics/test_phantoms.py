"""Phantoms: label maps (known, extra-cerebral and unknown labels), the nilearn MNI head."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.errors import DataError
from tumsyn_bids.physics import load_labelmap_phantom, pad_phantom

from .conftest import sphere_labels


def test_labelmap_phantom_classes_and_brain_mask(tmp_path):
    labels, affine = sphere_labels()
    path = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.float32), affine), path)  # float labels like SynthSeg
    ph = load_labelmap_phantom(path)
    names = {c.name: c.kind for c in ph.classes}
    assert names["cerebral_wm"] == "wm" and names["ventricles"] == "csf"
    assert names["extracerebral_502"] == "extracerebral" and names["extracerebral_136"] == "extracerebral"
    assert ph.labels.shape == labels.shape and ph.voxel_size == (2.0, 2.0, 2.0)
    # brain mask = brain labels incl. CSF, not the extra-cerebral shells
    np.testing.assert_array_equal(ph.brain_mask, np.isin(labels, [2, 3, 4, 24]))
    assert ph.head_mask().sum() == (labels > 0).sum()


def test_unknown_labels_use_the_fallback_class_and_are_logged(tmp_path, caplog):
    labels, affine = sphere_labels()
    labels[labels == 502] = 999
    path = tmp_path / "odd.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), path)
    with caplog.at_level(logging.WARNING, logger="tumsyn_bids.physics.phantoms"):
        ph = load_labelmap_phantom(path)
    assert any("999" in r.getMessage() and "odd.nii.gz" in r.getMessage() for r in caplog.records)
    unknown = ph.class_index("unknown")
    assert ph.classes[unknown].kind == "unknown"
    assert (ph.labels == unknown).sum() == (labels == 999).sum()


def test_non_3d_label_map_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), dtype=np.int16), np.eye(4)), path)
    with pytest.raises(DataError, match="four_d.nii.gz.*3D"):
        load_labelmap_phantom(path)
    path2 = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4), dtype=np.int16), np.eye(4)), path2)
    with pytest.raises(DataError, match="3D"):
        load_labelmap_phantom(path2)
    with pytest.raises(DataError, match="cannot read"):
        load_labelmap_phantom(tmp_path / "missing.nii.gz")


def test_trailing_singleton_dimension_is_accepted(tmp_path):
    labels, affine = sphere_labels(12)
    path = tmp_path / "seg4d.nii.gz"
    nib.save(nib.Nifti1Image(labels[..., None], affine), path)
    assert load_labelmap_phantom(path).shape == (12, 12, 12)


def test_mni_phantom_has_brain_csf_and_extracerebral_layers(mni4):
    ph = mni4
    names = [c.name for c in ph.classes]
    assert names[:3] == ["wm", "gm", "csf"] and "skull" in names and "scalp_fat" in names
    assert ph.voxel_size == pytest.approx((4.0, 4.0, 4.0))
    total = ph.probs.sum(axis=0)
    assert total.max() <= 1.0 + 1e-5 and ph.probs.min() >= 0
    icv_ml = ph.brain_mask.sum() * 64 / 1000
    assert 1200 < icv_ml < 2300  # an adult intracranial volume
    outside = ~ph.brain_mask
    extra = ph.probs[3:].sum(axis=0)
    # a shell, not the whole field of view: 12.5% of the voxels outside the brain are mostly
    # extra-cerebral tissue at 4 mm, the rest is air
    assert 0.05 < (extra[outside] > 0.5).mean() < 0.5
    assert extra[outside].sum() * 64 / 1000 > 300  # hundreds of mL of skull/scalp
    assert extra[ph.brain_mask].mean() < 0.05
    # CSF fills the ventricles: some intracranial voxels are mostly CSF
    assert (ph.fractions("csf")[ph.brain_mask] > 0.8).sum() > 50


def test_pad_phantom_keeps_world_positions(sphere_phantom):
    padded = pad_phantom(sphere_phantom, (30, 20, 24))
    assert padded.shape == (30, 20, 24)
    # a voxel well inside both grids maps to the same world point and label
    ijk_old = np.array([12, 12, 12, 1.0])
    world = sphere_phantom.affine @ ijk_old
    ijk_new = np.rint(np.linalg.solve(padded.affine, world)).astype(int)
    old_class = sphere_phantom.classes[sphere_phantom.labels[12, 12, 12]]
    assert old_class == padded.classes[padded.labels[tuple(ijk_new[:3])]]


# ----------------------------------------------------------------------------- the demo head (issue 18)

HEAD = ["dura", "skull", "diploe", "scalp_fat", "skin_muscle", "eye", "nerve"]


@pytest.fixture(scope="module")
def mni2():
    from tumsyn_bids.physics import mni_phantom

    return mni_phantom(2.0)  # the demo's phantom (cached: mni_phantom(4.0) is resampled from it)


def _ray_outside_brain(ph, world, axis: int, step: int) -> np.ndarray:
    """Class fractions (K, N) from ``world`` along array ``axis`` (``step`` +-1) to the edge of the
    field of view, after the last brain-mask voxel."""
    ijk = [int(v) for v in np.round(np.linalg.solve(ph.affine, [*world, 1])[:3])]
    index: list = list(ijk)
    index[axis] = slice(None)
    probs = ph.probs[(slice(None), *index)]
    inside = ph.brain_mask[tuple(index)]
    if step < 0:
        probs, inside = probs[:, ::-1], inside[::-1]
        start = ph.shape[axis] - 1 - ijk[axis]
    else:
        start = ijk[axis]
    probs, inside = probs[:, start:], inside[start:]
    return probs[:, int(np.flatnonzero(inside).max()) + 1:]


def test_demo_head_has_two_bone_tables_around_the_diploe_then_scalp(mni2):
    ph = mni2
    assert [c.name for c in ph.classes] == ["wm", "gm", "csf", *HEAD]
    for world, axis, step in (([0, -20, 0], 2, 1), ([0, -20, 0], 0, -1), ([0, -20, 0], 0, 1),
                              ([0, -20, 0], 1, -1), ([0, 10, 30], 1, 1)):  # up, sides, back, forehead
        ray = _ray_outside_brain(ph, world, axis, step)
        pos = np.arange(ray.shape[1])

        def centre(name, ray=ray, pos=pos):
            f = ray[ph.class_index(name)]
            return float((f * pos).sum() / f.sum())

        bone, diploe = ray[ph.class_index("skull")], centre("diploe")
        assert bone[pos < diploe].sum() > 0.4, (world, axis)  # inner table
        assert bone[(pos > diploe) & (pos < diploe + 4)].sum() > 0.4, (world, axis)  # outer table
        assert diploe + 1 < centre("scalp_fat"), (world, axis)  # fat outside the skull
        last = int(np.flatnonzero(ray.sum(axis=0) > 0.05).max())
        assert ray[ph.class_index("skin_muscle"), last] > ray[ph.class_index("scalp_fat"), last]  # skin outermost
        assert ray[:, -1].sum() < 0.05  # air at the edge of the field of view
        assert ray.sum(axis=0)[pos < diploe + 4].min() > 0.9  # no air inside the skull


def test_demo_head_has_eyes_optic_nerves_and_a_neck(mni2):
    from scipy import ndimage

    ph = mni2
    vox_ml = 8 / 1000
    eye = ph.fractions("eye") > 0.5
    labels, n = ndimage.label(eye)
    assert n == 2
    centres = [ph.affine @ [*c, 1] for c in ndimage.center_of_mass(eye, labels, [1, 2])]
    brain = ph.affine[:3, :3] @ np.argwhere(ph.brain_mask).mean(axis=0) + ph.affine[:3, 3]
    for c, size in zip(centres, ndimage.sum(eye, labels, [1, 2]), strict=True):
        assert 5 < size * vox_ml < 10  # a 24 mm globe holds ~7 mL
        assert 25 < abs(c[0]) < 37 and c[1] > brain[1] + 40 and c[2] < brain[2]  # in front, below the brain
    assert not (eye & ph.brain_mask).any()
    assert 0.5 < ph.fractions("nerve").sum() * vox_ml < 20  # optic nerves and the cord
    assert 1200 < ph.brain_mask.sum() * vox_ml < 1800  # an average adult intracranial volume
    # Neck: tissue 30 mm below the lowest intracranial voxel, with CSF around the cord in its canal.
    k_low = np.flatnonzero(ph.brain_mask.any(axis=(0, 1))).min() - 15
    assert k_low >= 0
    tissue = ph.probs[:, :, :, k_low].sum(axis=0)
    assert (tissue > 0.5).sum() * 4 > 5000  # mm2: a neck's cross-section (~90 cm2)
    assert ph.fractions("csf")[:, :, k_low].sum() > 5 and ph.fractions("diploe")[:, :, k_low].sum() > 5


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_bone_is_dark_and_diploe_fatty_in_every_contrast(field):
    from tumsyn_bids.contrasts import CONTRASTS
    from tumsyn_bids.physics import draw_tissue_properties, resolve_protocol, tissue_signals
    from tumsyn_bids.physics.tissues import TissueClass

    classes = [TissueClass("wm", "wm"), TissueClass("gm", "gm"), TissueClass("skull", "bone"),
               TissueClass("diploe", "marrow"), TissueClass("fat", "fat")]
    rng = np.random.default_rng(0)
    for _ in range(20):
        props = draw_tissue_properties(classes, field, rng)
        for contrast in CONTRASTS:
            s = tissue_signals(props, resolve_protocol(contrast, field))
            assert s[2] < 0.1 * max(s[0], s[1]), (contrast, field, s)
        t1w = tissue_signals(props, resolve_protocol("T1w", field))
        assert t1w[3] > t1w[1]  # fatty marrow brighter than grey matter on T1w


def test_label_map_phantoms_get_no_head():
    from tumsyn_bids.physics import labelmap_phantom

    labels = np.zeros((8, 8, 8), dtype=np.int16)
    labels[2:6, 2:6, 2:6] = 2
    labels[3:5, 3:5, 3:5] = 4
    ph = labelmap_phantom(labels, np.eye(4))
    assert [c.name for c in ph.classes] == ["background", "cerebral_wm", "ventricles"]
    assert ph.labels.shape == labels.shape and ph.brain_mask.sum() == 64
