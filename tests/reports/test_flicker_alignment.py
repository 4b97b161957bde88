"""Flickers: both layers are cut at the same world positions (issue 19, item 1).

A flicker (niworkflows' ``compose_view``) stacks two mosaics; hovering alternates them, so any
shift between the layers shows as a jump that a reader takes for misregistration. The cut of each
slice is read back from the SVG itself: nilearn prints every slice's world coordinate
(``x=-8``) as a comment beside the drawn label, and the slice pictures are ``<image>`` elements,
so two layers drawn from the same voxels at the same cuts carry byte-identical pictures.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.reports import reportlets
from tumsyn_bids.reports.reportlets import mosaic_cuts, plot_flicker, write_reportlets

LABEL = re.compile(r"<!-- ([xyz])=(-?\d+) -->")
IMAGE = re.compile(r"<image\b[^>]*?(?:xlink:)?href=\"([^\"]+)\"")


def _phantom(shape=(22, 26, 18)) -> np.ndarray:
    """A lopsided blob: every slice along every axis looks different from its neighbours."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    c = (np.asarray(shape) - 1) / 2
    inside = ((i - c[0]) / 9) ** 2 + ((j - c[1]) / 11) ** 2 + ((k - c[2]) / 7) ** 2 < 1
    return np.where(inside, 1 + i + 2 * j + 3 * k + 5 * (i > c[0] + 3), 0).astype(np.float32)


def _affine(flip_x: bool = False) -> np.ndarray:
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-21.0, -25.0, -7.0]
    if flip_x:  # LAS storage of the same world image: x runs the other way, last voxel at the old origin
        aff[0, 0], aff[0, 3] = -2.0, -21.0 + 2.0 * 21
    return aff


def _save(data: np.ndarray, aff: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, aff), str(path))
    return path


def _layers(svg: Path) -> tuple[str, str]:
    """(background, foreground) halves of a compose_view flicker."""
    text = svg.read_text()
    assert text.count('class="background-svg"') == 1 and text.count('class="foreground-svg"') == 1
    bg, fg = text.split('class="foreground-svg"')
    assert 'class="background-svg"' in bg
    return bg, fg


def _cut_labels(layer: str) -> dict[str, list[int]]:
    labels: dict[str, list[int]] = {"x": [], "y": [], "z": []}
    for axis, value in LABEL.findall(layer):
        labels[axis].append(int(value))
    return {axis: sorted(values) for axis, values in labels.items()}


def _expected_labels(cuts) -> dict[str, list[int]]:
    return {axis: sorted(int(c) for c in cuts[axis]) for axis in "xyz"}  # nilearn's "%s=%i" label


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    monkeypatch.setattr(reportlets, "DPI", 20)  # same SVG structure, a fraction of the pixels


def test_flicker_layers_are_cut_at_the_same_world_coordinates(tmp_path):
    mask = _save((_phantom() > 0).astype(np.uint8), _affine(), tmp_path / "mask.nii.gz")
    ref = _save(_phantom(), _affine(), tmp_path / "ref.nii.gz")
    img = _save(np.sqrt(_phantom()), _affine(), tmp_path / "img.nii.gz")
    cuts = mosaic_cuts(mask, 5)
    svg = plot_flicker(ref, img, tmp_path / "flicker.svg", cuts=cuts, reference_label="reference",
                       image_label="image", contour=mask)
    bg, fg = _layers(Path(svg))
    assert "reference" in bg and "image" in fg
    expected = _expected_labels(cuts)
    assert all(len(expected[a]) == 5 for a in "xyz")
    assert _cut_labels(bg) == expected
    assert _cut_labels(fg) == expected


@pytest.mark.parametrize("flip_reference", [False, True], ids=["same-grid", "reference-stored-LAS"])
def test_same_image_in_both_layers_draws_identical_slices(tmp_path, flip_reference):
    """The source flicker of write_reportlets with a 'synthetic' image equal to the source voxels.

    Whatever the storage order of the source, the slice pictures of the two layers must be the same
    bytes, slice for slice: a layer drawn at other cuts (or from shifted voxels) differs.
    """
    data = _phantom()
    out = tmp_path / "out"
    image = _save(data, _affine(), out / "sub-01/anat/sub-01_desc-tumsyn_T2w.nii.gz")
    mask = _save((data > 0).astype(np.uint8), _affine(), out / "sub-01/anat/sub-01_desc-brain_mask.nii.gz")
    src_data = data[::-1] if flip_reference else data
    source = _save(src_data, _affine(flip_x=flip_reference), tmp_path / "bids/sub-01/anat/sub-01_T1w.nii.gz")
    assert np.allclose(nib.as_closest_canonical(nib.load(str(source))).get_fdata(), data)  # same world image
    drawn = write_reportlets(out_dir=out, source_file=source, target="T2w",
                             written={"image": str(image), "mask": str(mask)}, n_cuts=5)
    bg, fg = _layers(Path(drawn["source"]))
    assert _cut_labels(bg) == _cut_labels(fg) == _expected_labels(mosaic_cuts(mask, 5))
    bg_images = [hashlib.sha1(href.encode()).hexdigest()[:12] for href in IMAGE.findall(bg)]
    fg_images = [hashlib.sha1(href.encode()).hexdigest()[:12] for href in IMAGE.findall(fg)]
    assert len(bg_images) == len(fg_images) >= 15  # 5 slices on each of three axes
    assert bg_images == fg_images
