"""Derivatives writer, figures, participant report and group summary on a small real out_dir."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.conform import conform
from tumsyn_bids.anat.outputs import write_synthetic
from tumsyn_bids.bids.derivatives import atomic_write_json
from tumsyn_bids.reports.collect import PLAN_FILE, crash_summary
from tumsyn_bids.reports.group import write_group_reports
from tumsyn_bids.reports.participant import write_participant_report

LAS = np.array([[-3.0, 0, 0, 40], [0, 3.0, 0, -40], [0, 0, 3.0, -30], [0, 0, 0, 1]])


def _brain(shape=(20, 24, 18)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    return np.where(r < 0.8, 100 + 50 * np.cos(6 * r), 0).astype(np.float32)


@pytest.fixture()
def out_dir(tmp_path):
    """out_dir with two participants written by write_synthetic; sub-03 planned but crashed."""
    bids, out = tmp_path / "bids", tmp_path / "out"
    for sub in ("01", "02"):
        src = bids / f"sub-{sub}" / "anat" / f"sub-{sub}_acq-fast_T1w.nii.gz"
        src.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(_brain(), LAS), str(src))
        work = tmp_path / f"work{sub}"
        work.mkdir()
        conform(src, work / "c.nii.gz")
        ras = nib.load(str(work / "c.nii.gz"))
        mask = (np.asarray(ras.dataobj) > 0).astype(np.uint8)
        nib.save(nib.Nifti1Image(mask, ras.affine), str(work / "mask.nii.gz"))
        synth = np.asarray(ras.dataobj)[::-1].copy() / 150.0  # stand-in for the network output
        nib.save(nib.Nifti1Image(synth.astype(np.float32), ras.affine), str(work / "synth.nii.gz"))
        qc = real = None
        if sub == "01":
            real = work / "synth.nii.gz"
            qc = {"RealImage": str(src), "masked": {"psnr": 30.5, "ssim": 0.91, "mae": 0.02}}
        written = write_synthetic(
            out_dir=out, bids_dir=bids, source_file=src, synth_file=work / "synth.nii.gz",
            mask_file=work / "mask.nii.gz", target="T2w", prompt=f"prompt {sub}",
            synthesis={"model_name": "tumsyn-small", "sha256": "abc", "device": "cpu",
                       "voxel_size": [3.0, 3.0, 3.0], "seconds": 1.5},
            mask_info={"method": "already-skull-stripped", "detail": "test", "volume_ml": 1.0},
            source_metadata={"RepetitionTime": 2.3}, conditioning={"Modality": "T2w"},
            mask_output=(sub == "02"), qc=qc, real_registered=real,
        )
        assert Path(written["image"]).is_file()
        atomic_write_json(out / f"sub-{sub}" / "log" / PLAN_FILE,
                          {"outputs": [{"output": f"sub-{sub}/anat/sub-{sub}_desc-tumsyn_T2w.nii.gz"}]})
    _old_png_figures(out / "sub-01" / "figures", "sub-01_desc-tumsyn_T2w")
    crash = out / "sub-03" / "log" / "20260101-000000_x" / "crash-1-node.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Traceback (most recent call last):\n  File x\n"
                     "tumsyn_bids.errors.DataError: /b/sub-03_T1w.nii.gz: image has no finite values\n")
    atomic_write_json(out / "sub-03" / "log" / PLAN_FILE,
                      {"outputs": [{"output": "sub-03/anat/sub-03_desc-tumsyn_T2w.nii.gz"}]})
    return bids, out


def _old_png_figures(figures: Path, stem: str) -> None:
    """The static PNG panels that versions before the SVG-only reports wrote beside each output."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    for kind in ("synth", "qc"):
        plt.imsave(figures / f"{stem}_{kind}.png", np.zeros((4, 6)), cmap="gray")


def test_written_image_is_in_source_grid_with_mask(out_dir):
    bids, out = out_dir
    src = nib.load(str(bids / "sub-02/anat/sub-02_acq-fast_T1w.nii.gz"))
    img = nib.load(str(out / "sub-02/anat/sub-02_desc-tumsyn_T2w.nii.gz"))
    assert np.allclose(img.affine, LAS) and img.get_data_dtype() == np.float32
    data = np.asarray(img.dataobj)
    assert np.all(data[np.asarray(src.dataobj) == 0] == 0)  # --mask-output zeroes the background
    mask = nib.load(str(out / "sub-02/anat/sub-02_desc-brain_mask.nii.gz"))
    assert mask.get_data_dtype() == np.uint8 and np.allclose(mask.affine, LAS)
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-tumsyn_T2w.json").read_text())
    assert sidecar["QC"]["RealImage"] == "bids:raw:sub-01/anat/sub-01_acq-fast_T1w.nii.gz"
    assert sidecar["MaskedOutput"] is False


def test_participant_report(out_dir):
    _, out = out_dir
    page = write_participant_report(out, "01", run_info={"Device requested": "cpu"}).read_text()
    # no SVG reportlets were drawn here: the report falls back to the static PNGs of an older version
    assert '<img class="png-reportlet" src="sub-01/figures/sub-01_desc-tumsyn_T2w_synth.png"' in page
    assert 'src="sub-01/figures/sub-01_desc-tumsyn_T2w_qc.png"' in page
    assert "prompt 01" in page and "PSNR (brain mask)</th><td>30.500" in page and "already-skull-stripped" in page
    assert "No errors to report." in page and "Device requested</th><td>cpu" in page
    assert "Reportlet not drawn" in page  # the mask reportlet has no PNG stand-in: said, not hidden
    bad = write_participant_report(out, "03").read_text()
    assert "No errors to report." not in bad and "image has no finite values" in bad


def test_group_summary_lists_outputs_and_missing_participants(out_dir):
    _, out = out_dir
    summary = write_group_reports(out)
    assert summary.n_outputs == 2 and set(summary.tables) == {"T2w"}
    rows = list(csv.DictReader(summary.tables["T2w"].open(), delimiter="\t"))
    assert [r["participant_id"] for r in rows] == ["sub-01", "sub-02"]
    assert rows[0]["qc_psnr"] == "30.5000" and rows[1]["qc_psnr"] == "n/a"
    assert rows[0]["source"] == "sub-01/anat/sub-01_acq-fast_T1w.nii.gz"
    assert list(summary.missing) == ["sub-03"]
    assert "image has no finite values" in " ".join(summary.missing["sub-03"])
    page = summary.html.read_text()
    assert "sub-01/anat/sub-01_desc-tumsyn_T2w.nii.gz" in page and "sub-03" in page


def test_group_level_without_outputs_is_no_input(tmp_path):
    from tumsyn_bids.errors import NoInputError

    with pytest.raises(NoInputError):
        write_group_reports(tmp_path)


def test_crash_summary_takes_the_error_line(tmp_path):
    crash = tmp_path / "crash.txt"
    crash.write_text("Node: x\nTraceback:\n  File y\nValueError: bad thing\n\nWhen creating...\n")
    assert crash_summary(crash) == "ValueError: bad thing"
