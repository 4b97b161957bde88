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
    assert sphere_phantom.classes[sphere_phantom.labels[12, 12, 12]] == padded.classes[padded.labels[tuple(ijk_new[:3])]]
