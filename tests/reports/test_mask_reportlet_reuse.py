"""The brain-mask reportlet is shared by every output of a source, and redrawn when it is stale.

Claim under test (``reports/reportlets.py``, ``_fresh``: the mask SVG is reused when it "exists and
is newer than every input (another output of the source drew it)"). Both halves: a second output
of the same source reuses the drawing untouched; a rerun after the mask (or the source) changed
draws it again, so the report never shows an old mask's contour.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.reports import reportlets
from tumsyn_bids.reports.reportlets import write_reportlets

AFF = np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    monkeypatch.setattr(reportlets, "DPI", 20)


def _ball(radius: float) -> np.ndarray:
    i, j, k = np.meshgrid(*(np.arange(16, dtype=np.float32) - 7.5,) * 3, indexing="ij")
    return (i**2 + j**2 + k**2 < radius**2).astype(np.uint8)


def _setup(tmp_path):
    out = tmp_path / "out"
    anat = out / "sub-01" / "anat"
    anat.mkdir(parents=True)
    source = tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    source.parent.mkdir(parents=True)
    head = _ball(7.5).astype(np.float32) * 50 + _ball(5.0) * 50
    nib.save(nib.Nifti1Image(head, AFF), str(source))
    mask = anat / "sub-01_desc-brain_mask.nii.gz"
    nib.save(nib.Nifti1Image(_ball(5.0), AFF), str(mask))
    written = {}
    for target in ("T2w", "FLAIR"):
        image = anat / f"sub-01_desc-tumsyn_{target}.nii.gz"
        nib.save(nib.Nifti1Image(head[::-1].copy(), AFF), str(image))
        written[target] = {"image": str(image), "mask": str(mask)}
    return out, source, mask, written


def _age(path, seconds_ago: float) -> float:
    stamp = os.stat(path).st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))
    return stamp


def test_second_output_of_a_source_reuses_the_mask_drawing(tmp_path):
    out, source, mask, written = _setup(tmp_path)
    first = write_reportlets(out_dir=out, source_file=source, target="T2w", written=written["T2w"], n_cuts=3)
    svg = first["mask"]
    # inputs older than the drawing (as when the same run drew it a moment ago)
    for path in (source, mask):
        _age(path, 100)
    drawn_at = os.stat(svg).st_mtime
    second = write_reportlets(out_dir=out, source_file=source, target="FLAIR", written=written["FLAIR"], n_cuts=3)
    assert second["mask"] == svg
    assert os.stat(svg).st_mtime == drawn_at  # reused, not redrawn
    assert "source" in second  # the output's own flicker is still drawn


@pytest.mark.parametrize("changed", ["mask", "source"])
def test_mask_drawing_is_redrawn_when_an_input_is_newer(tmp_path, changed):
    out, source, mask, written = _setup(tmp_path)
    svg = write_reportlets(out_dir=out, source_file=source, target="T2w", written=written["T2w"], n_cuts=3)["mask"]
    before = open(svg).read()
    old = _age(svg, 100)  # the drawing is from an earlier run
    if changed == "mask":  # the rerun wrote another brain mask
        nib.save(nib.Nifti1Image(_ball(6.5), AFF), str(mask))
    else:  # the source image was replaced in the dataset
        data = np.asarray(nib.load(str(source)).dataobj)
        nib.save(nib.Nifti1Image((data * 0.5 + 10 * _ball(3.0)).astype(np.float32), AFF), str(source))
    again = write_reportlets(out_dir=out, source_file=source, target="T2w", written=written["T2w"], n_cuts=3)
    assert again["mask"] == svg
    assert os.stat(svg).st_mtime > old  # drawn again
    assert open(svg).read() != before  # with the new contour / image
