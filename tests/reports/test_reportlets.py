"""Reportlets and the nipreps-style reports on the demo dataset (bids_examples/demo).

The out_dir is made by the real derivatives writer and the real reportlet drawer; only the
network is replaced by a stand-in image (the wiring of the report is under test, not the model).
Module-scoped: drawn once (about 10 s on two cores, at a low resolution), checked by every test. The old static PNGs
that the writer still draws are skipped here (tests/reports/test_reports.py covers them).
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.conform import conform
from tumsyn_bids.anat.outputs import write_synthetic
from tumsyn_bids.bids.derivatives import atomic_write_json
from tumsyn_bids.reports.collect import PLAN_FILE
from tumsyn_bids.reports.group import write_group_reports
from tumsyn_bids.reports.participant import write_participant_report
from tumsyn_bids.reports.reportlets import mosaic_cuts, reportlet_relpath, write_reportlets

DEMO = Path(__file__).resolve().parents[2] / "bids_examples" / "demo"
SVG = "{http://www.w3.org/2000/svg}"
MASK_QC = {"Method": "deepbet", "VolumeML": 812.5, "SupportDice": 0.71,
           "Warning": "mask covers 30% less than the head support suggests",
           "Rejected": [{"Method": "template", "VolumeML": 4036.3}, {"Method": "other"}]}


def _canonical(path: Path, out: Path, *, binary: bool = False) -> Path:
    img = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(img.dataobj)
    data = (data > 0).astype(np.uint8) if binary else data.astype(np.float32)
    nib.save(nib.Nifti1Image(data, img.affine), str(out))
    return out


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """sub-01 ses-1 (acquired T2w: QC flicker; tissue maps), sub-02 (a MaskQC warning); sub-03 crashed."""
    root = tmp_path_factory.mktemp("demo_reports")
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tumsyn_bids.reports.reportlets.DPI", 30)  # same SVG structure, a third of the pixels
        for sub, ses in (("01", "1"), ("02", "1")):
            _demo_output(root, out, sub, ses)
    for sub in ("01", "02", "03"):
        outputs = [f"sub-{sub}/ses-1/anat/sub-{sub}_ses-1_desc-tumsyn_T2w.nii.gz"]
        atomic_write_json(out / f"sub-{sub}" / "log" / PLAN_FILE,
                          {"run_uuid": "20260101-000000_demo", "outputs": [{"output": o} for o in outputs]})
    crash = out / "sub-03" / "log" / "20260101-000000_demo" / "crash-20260101-synthesize.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Node: synthesize\nTraceback (most recent call last):\n  File x\n"
                     "RuntimeError: CUDA out of memory while synthesizing sub-03_ses-1_T1w.nii.gz\n")
    for sub in ("01", "02", "03"):
        write_participant_report(out, sub, run_info={"Run": "20260101-000000_demo",
                                                     "Command line": "tumsyn-bids bids out participant"})
    summary = write_group_reports(out)
    return out, summary


def _demo_output(root: Path, out: Path, sub: str, ses: str) -> None:
    """One demo output written by the real writer and drawn by the real reportlet code."""
    src = DEMO / f"sub-{sub}" / f"ses-{ses}" / "anat" / f"sub-{sub}_ses-{ses}_T1w.nii.gz"
    gt = DEMO / "derivatives" / "groundtruth" / f"sub-{sub}" / f"ses-{ses}" / "anat"
    work = root / f"work{sub}{ses}"
    work.mkdir()
    conform(src, work / "source.nii.gz")
    mask = _canonical(gt / f"sub-{sub}_ses-{ses}_desc-brain_mask.nii.gz", work / "mask.nii.gz", binary=True)
    ras = nib.load(str(work / "source.nii.gz"))
    t1 = np.asarray(ras.dataobj, dtype=np.float32)
    inside = np.asarray(nib.load(str(mask)).dataobj) > 0
    synth = np.where(inside, t1.max() - t1, 0).astype(np.float32)  # stand-in for the network: inverted T1w
    nib.save(nib.Nifti1Image(synth, ras.affine), str(work / "synth.nii.gz"))
    qc = real = None
    maps = {}
    if (sub, ses) == ("01", "1"):
        real = _canonical(src.with_name("sub-01_ses-1_T2w.nii.gz"), work / "real.nii.gz")
        real_img = nib.load(str(real))
        nib.save(nib.Nifti1Image(np.where(inside, np.asarray(real_img.dataobj), 0).astype(np.float32),
                                 real_img.affine), str(real))
        qc = {"RealImage": str(src.with_name("sub-01_ses-1_T2w.nii.gz")), "Registration": "rigid (test)",
              "masked": {"psnr": 21.25, "ssim": 0.612, "mae": 0.081}}
        for name, scale in (("T1", 900.0), ("T2", 80.0)):
            path = work / f"{name}.nii.gz"
            nib.save(nib.Nifti1Image(np.where(inside, scale * t1 / t1.max(), 0).astype(np.float32), ras.affine),
                     str(path))
            maps[name] = str(path)
    written = write_synthetic(
        out_dir=out, bids_dir=DEMO, source_file=src, synth_file=work / "synth.nii.gz", mask_file=mask,
        target="T2w", prompt=f"Modality: T2w. sub-{sub} ses-{ses}",
        synthesis={"model_name": "tumsyn-small", "sha256": "0" * 64, "device": "cpu",
                   "voxel_size": [2.0, 2.0, 2.0], "seconds": 1.5 + int(sub), "maps": maps},
        mask_info={"method": "groundtruth", "detail": "demo mask", "volume_ml": 1300.0 + int(sub)},
        source_metadata={"RepetitionTime": 2.3}, conditioning={"Modality": "T2w"},
        qc=qc, real_registered=real,
    )
    if sub == "02":  # the skull-strip QC's sidecar key (written by anat/, read here)
        sidecar = Path(written["mask"].replace(".nii.gz", ".json"))
        atomic_write_json(sidecar, {**json.loads(sidecar.read_text()), "MaskQC": MASK_QC})
    write_reportlets(out_dir=out, source_file=src, target="T2w", written=written,
                     real_registered=real, synth_file=work / "synth.nii.gz")


def _svg(path: Path) -> ET.Element:
    return ET.fromstring(path.read_text())


def test_reportlets_are_nipreps_svgs_with_three_axes(demo_out):
    out, _ = demo_out
    figures = out / "sub-01" / "figures"
    names = sorted(p.name for p in figures.glob("*.svg"))
    assert names == ["sub-01_ses-1_desc-brain_mask.svg", "sub-01_ses-1_desc-tumsyn_T2w_acquired.svg",
                     "sub-01_ses-1_desc-tumsyn_T2w_maps.svg", "sub-01_ses-1_desc-tumsyn_T2w_source.svg"]
    assert sorted(p.name for p in (out / "sub-02" / "figures").glob("*.svg")) == [
        "sub-02_ses-1_desc-brain_mask.svg", "sub-02_ses-1_desc-tumsyn_T2w_source.svg"]
    assert not list(figures.glob(".*"))  # atomic writes leave no temporary file
    mask = figures / "sub-01_ses-1_desc-brain_mask.svg"
    root = _svg(mask)
    assert root.tag == f"{SVG}svg" and root.get("viewBox")
    text = mask.read_text()
    # one mosaic figure (axial, sagittal, coronal rows), seven slices each, mask contour drawn
    assert len(re.findall(r'id="mask-mosaic"', text)) == 1 and not re.search(r'id="mask-(?:z|x|y)"', text)
    assert text.count("<image") >= 21
    assert "stroke: #ff0000" in text or "stroke:#ff0000" in text
    assert "flickerAnimation" not in text  # a still, not a flicker
    maps = (figures / "sub-01_ses-1_desc-tumsyn_T2w_maps.svg").read_text()
    assert "T1 (ms), model estimate" in maps and 'id="mapT1-mosaic"' in maps
    assert maps.count("<image") >= 21  # 7 slices on each of the three axes


def test_flickers_show_both_images_at_the_same_world_positions(demo_out):
    out, _ = demo_out
    for kind, labels in (("source", ("source: sub-01_ses-1_T1w.nii.gz", "synthetic T2w")),
                         ("acquired", ("acquired T2w (registered, brain)", "synthetic T2w (brain)"))):
        path = out / "sub-01" / "figures" / f"sub-01_ses-1_desc-tumsyn_T2w_{kind}.svg"
        text = path.read_text()
        root = _svg(path)
        groups = {g.get("class"): g for g in root.iter(f"{SVG}g") if g.get("class")}
        assert {"background-svg", "foreground-svg"} <= set(groups)
        assert "flickerAnimation" in text and ".foreground-svg:hover" in text
        for label in labels:
            assert label in text
        # both layers carry the same slice labels: the same cuts in world coordinates
        bg = ET.tostring(groups["background-svg"], encoding="unicode")
        fg = ET.tostring(groups["foreground-svg"], encoding="unicode")
        assert bg.count("<ns0:image") == fg.count("<ns0:image") >= 21


def test_cuts_span_the_brain_on_all_three_axes():
    mask = DEMO / "derivatives/groundtruth/sub-01/ses-1/anat/sub-01_ses-1_desc-brain_mask.nii.gz"
    cuts = mosaic_cuts(mask)
    img = nib.as_closest_canonical(nib.load(str(mask)))
    ijk = np.argwhere(np.asarray(img.dataobj) > 0)
    world = nib.affines.apply_affine(img.affine, ijk)
    for axis, col in (("x", 0), ("y", 1), ("z", 2)):
        assert len(cuts[axis]) == 7 and cuts[axis] == sorted(cuts[axis])
        lo, hi = world[:, col].min(), world[:, col].max()
        assert lo < cuts[axis][0] and cuts[axis][-1] < hi
        assert cuts[axis][-1] - cuts[axis][0] > 0.6 * (hi - lo)  # spread over the brain, not bunched


def test_participant_report_is_assembled_from_the_reportlets(demo_out):
    out, _ = demo_out
    page = (out / "sub-01.html").read_text()
    for section in ('id="summary"', 'id="sub-01_ses-1_desc-tumsyn_T2w"', 'id="sub-01_ses-1_desc-tumsyn_T2w-mask"',
                    'id="sub-01_ses-1_desc-tumsyn_T2w-source"', 'id="sub-01_ses-1_desc-tumsyn_T2w-acquired"',
                    'id="sub-01_ses-1_desc-tumsyn_T2w-synthesis"', 'id="sub-01_ses-1_desc-tumsyn_T2w-maps"',
                    'id="errors"', 'id="about"'):
        assert section in page
    # flickers are <object>s (hover works inside them), stills <img>s; every referenced file exists
    objects = re.findall(r'<object class="svg-reportlet" type="image/svg\+xml" data="([^"]+)"', page)
    images = re.findall(r'<img class="svg-reportlet" src="([^"]+)"', page)
    assert sorted(objects) == ["sub-01/figures/sub-01_ses-1_desc-tumsyn_T2w_acquired.svg",
                               "sub-01/figures/sub-01_ses-1_desc-tumsyn_T2w_source.svg"]
    assert "sub-01/figures/sub-01_ses-1_desc-tumsyn_T2w_maps.svg" in images
    assert all((out / p).is_file() for p in objects + images)
    assert "_synth.png" not in page  # the static PNGs are no longer what the report shows
    # QC numbers beside the acquired flicker, provenance table, about section
    stem = "sub-01_ses-1_desc-tumsyn_T2w"
    acquired = page.split(f'id="{stem}-acquired"')[1].split(f'id="{stem}-synthesis"')[0]
    assert "PSNR (brain mask)" in acquired and "21.250" in acquired and "0.612" in acquired
    assert "0" * 64 in page and "Modality: T2w. sub-01 ses-1" in page
    assert "tumsyn-bids bids out participant" in page and "20260101-000000_demo" in page
    assert "No errors to report." in page
    # offline: nothing is fetched from anywhere
    assert not re.search(r'(src|href|data)="(https?:)?//', page)
    assert "<script" not in page


def test_mask_qc_is_shown_beside_the_mask_and_absent_is_fine(demo_out):
    out, _ = demo_out
    sub02 = (out / "sub-02.html").read_text()
    beside = sub02.split('id="sub-02_ses-1_desc-tumsyn_T2w-mask"')[1].split("</table>")[0]
    assert "MaskQC SupportDice</th><td>0.71<" in beside and "MaskQC VolumeML</th><td>812.5<" in beside
    assert "Rejected</th><td>Method: template; VolumeML: 4036.3<br>" in beside  # nested entries spelled out
    assert MASK_QC["Warning"] in beside
    assert "Warnings" in sub02.split('id="errors"')[0]  # the summary points at it
    page = (out / "sub-01.html").read_text()
    ses1_mask = page.split('id="sub-01_ses-1_desc-tumsyn_T2w-mask"')[1].split("</table>")[0]
    assert "MaskQC" not in ses1_mask and "groundtruth" in ses1_mask and "Warnings" not in page
    # sub-02 has no acquired T2w: no acquired flicker, no QC table
    assert "_acquired.svg" not in sub02 and "Real vs synthetic" not in sub02
    assert "sub-02/figures/sub-02_ses-1_desc-tumsyn_T2w_source.svg" in sub02


def test_errors_section_lists_crash_files_with_their_reason(demo_out):
    out, _ = demo_out
    page = (out / "sub-03.html").read_text()
    errors = page.split('id="errors"')[1].split('id="about"')[0]
    assert "RuntimeError: CUDA out of memory while synthesizing sub-03_ses-1_T1w.nii.gz" in errors
    assert 'href="sub-03/log/20260101-000000_demo/crash-20260101-synthesize.txt"' in errors
    assert "not written: <code>sub-03/ses-1/anat/sub-03_ses-1_desc-tumsyn_T2w.nii.gz</code>" in errors


def test_group_report_table_sorts_links_and_plots(demo_out):
    out, summary = demo_out
    page = summary.html.read_text()
    table = page.split('<table class="sortable" id="qc-table">')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])
    assert len(rows) == 2
    assert 'href="sub-01.html#sub-01_ses-1_desc-tumsyn_T2w"' in rows[0]
    assert "21.2500" in rows[0] and "1301.0" in rows[0]
    assert MASK_QC["Warning"] in rows[1] and "812.5" in rows[1]  # MaskQC.VolumeML wins over BrainVolumeMl
    assert "addEventListener('click'" in page and "aria-sort" in page  # the sort script is inline
    plot = page.split('<svg class="qc-plot"')[1].split("</svg>")[0]
    # strips for numbers that two or more participants have: mask volume and seconds, not PSNR (one only)
    assert "brain-mask volume (mL)" in plot and "synthesis time (s)" in plot and "PSNR" not in plot
    assert plot.count("<circle") == 2 + 2
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "sub-03" in page.split("missing outputs")[1]
    tsv = list(csv.DictReader(summary.tables["T2w"].open(), delimiter="\t"))
    assert list(tsv[0]) == list(__import__("tumsyn_bids.reports.group", fromlist=["COLUMNS"]).COLUMNS)


def test_a_reportlet_that_cannot_be_drawn_is_reported_not_raised(tmp_path, caplog):
    out = tmp_path / "out"
    image = out / "sub-09/anat/sub-09_desc-tumsyn_T2w.nii.gz"
    mask = out / "sub-09/anat/sub-09_desc-brain_mask.nii.gz"
    image.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4)), str(image))
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.uint8), np.eye(4)), str(mask))
    drawn = write_reportlets(out_dir=out, source_file=tmp_path / "gone_T1w.nii.gz", target="T2w",
                             written={"image": str(image), "mask": str(mask)})
    assert "mask" not in drawn and "source" not in drawn  # the source is missing: nothing drawn
    assert "could not draw the mask reportlet" in caplog.text
    assert not (out / reportlet_relpath("sub-09/anat/sub-09_desc-brain_mask.nii.gz", "mask")).exists()


def test_reports_module_does_not_import_niworkflows():
    import subprocess
    import sys

    code = ("import sys, tumsyn_bids.reports.participant, tumsyn_bids.reports.group, "
            "tumsyn_bids.reports.reportlets, tumsyn_bids.cli.main; "
            "print(sorted(m for m in ('niworkflows', 'nilearn', 'svgutils') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("with_real", [False, True])
def test_outputs_workflow_draws_reportlets_after_the_writer(tmp_path, with_real):
    from tumsyn_bids.workflows.synthesis import init_outputs_wf

    src, real = tmp_path / "sub-01_T1w.nii.gz", tmp_path / "sub-01_T2w.nii.gz"
    for path in (src, real):
        path.write_bytes(b"")
    wf = init_outputs_wf(out_dir=tmp_path / "out", bids_dir=tmp_path, source_file=src, target="T2w", prompt="p",
                         source_metadata={}, conditioning={}, mask_output=False,
                         real_file=real if with_real else None)
    node = wf.get_node("reportlets")
    assert node.inputs.target == "T2w" and node.inputs.source_file == str(src)
    edges = {(u.name, v.name): d["connect"] for u, v, d in wf._graph.edges(data=True)}
    assert ("written", "written") in edges[("write_derivatives", "reportlets")]
    assert (("compare_real", "reportlets") in edges) is with_real
    if with_real:
        assert ("real_registered", "real_registered") in edges[("compare_real", "reportlets")]
