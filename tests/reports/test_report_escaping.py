"""Hostile text in sidecars, file names and crash messages is shown as text in the reports (issue 19, item 6).

Sidecars and crash files are data: a vendor name, a prompt or an exception message may hold markup
(``<img src=x onerror=...>``), and the reports open in a browser. Every such value below carries
its own payload, so a failure names the field that leaked. The checks parse the page: no element
or event-handler attribute that the payloads would create, and each payload's text on the page.
The out_dir is written by the real derivatives writer (PNG figures and reportlets not drawn: the
text of the page is under test).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn_bids.anat.outputs import write_synthetic
from tumsyn_bids.bids.derivatives import atomic_write_json
from tumsyn_bids.reports.collect import PLAN_FILE
from tumsyn_bids.reports.group import write_group_reports
from tumsyn_bids.reports.participant import write_participant_report


def payload(field: str) -> str:
    return f'<img src=x onerror=alert("{field}")><script>steal("{field}")</script>'


def attr_breakout(field: str) -> str:
    return f'x" onmouseover="alert(\'{field}\')" data-x="'


CRASH_NAME = "crash-20260101-<b onclick=alert(1)>synthesize.txt"  # a name a nipype node label could produce
FIELDS = ("prompt", "model", "device", "vendor", "registration", "mask_method", "mask_detail", "mask_warning",
          "mask_nested", "source_uri", "planned_output", "planned_failure", "crash_message", "run_info")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def hostile_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    bids, out, work = root / "bids", root / "out", root / "work"
    src = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    src.parent.mkdir(parents=True)
    work.mkdir()
    data = np.zeros((12, 12, 12), np.float32)
    data[3:9, 3:9, 3:9] = 100.0
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    for path in (src, work / "synth.nii.gz"):
        nib.save(nib.Nifti1Image(data, aff), str(path))
    nib.save(nib.Nifti1Image((data > 0).astype(np.uint8), aff), str(work / "mask.nii.gz"))
    with pytest.MonkeyPatch.context():
        written = write_synthetic(
            out_dir=out, bids_dir=bids, source_file=src, synth_file=work / "synth.nii.gz",
            mask_file=work / "mask.nii.gz", target="T2w", prompt=payload("prompt"),
            synthesis={"model_name": payload("model"), "sha256": "0" * 64, "device": payload("device"),
                       "voxel_size": [2.0, 2.0, 2.0], "seconds": 1.0},
            mask_info={"method": payload("mask_method"), "detail": payload("mask_detail"), "volume_ml": 1.0},
            source_metadata={"Manufacturer": payload("vendor"), "RepetitionTime": 2.3},
            conditioning={"Modality": "T2w"},
            qc={"Registration": payload("registration"), "masked": {"psnr": 20.0, "ssim": 0.5, "mae": 0.1}},
        )
    mask_sidecar = Path(written["mask"].replace(".nii.gz", ".json"))
    atomic_write_json(mask_sidecar, {**json.loads(mask_sidecar.read_text()),
                                     "MaskQC": {"Method": "deepbet", "Warning": payload("mask_warning"),
                                                "Rejected": [{"Method": payload("mask_nested")}]}})
    sidecar = Path(written["sidecar"])
    record = json.loads(sidecar.read_text())
    record["Sources"] = [*record["Sources"], payload("source_uri"), attr_breakout("source_uri_attr")]
    atomic_write_json(sidecar, record)
    plan = {"run_uuid": "20260101-000000_x", "outputs": [
        {"output": "sub-01/anat/sub-01_desc-tumsyn_T2w.nii.gz"},
        {"output": payload("planned_output"), "failed": payload("planned_failure")}]}
    atomic_write_json(out / "sub-01" / "log" / PLAN_FILE, plan)
    crash = out / "sub-01" / "log" / "20260101-000000_x" / CRASH_NAME
    crash.parent.mkdir(parents=True)
    crash.write_text(f"Node: synthesize\nTraceback (most recent call last):\n  File x\n"
                     f"RuntimeError: {payload('crash_message')}\n")
    report = write_participant_report(out, "01", run_info={"Run": "20260101-000000_x",
                                                           "Command line": "tumsyn-bids bids out participant",
                                                           "Note": payload("run_info")})
    return out, report


def test_participant_report_shows_hostile_values_as_text(hostile_out):
    out, report = hostile_out
    text = report.read_text()
    page = _parse(text)
    tags = [tag for tag, _ in page.tags]
    assert "script" not in tags
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.lower().startswith("on")]
    assert handlers == []
    assert not [attrs for tag, attrs in page.tags if tag == "img" and attrs.get("src") == "x"]
    # every payload is on the page, as text
    shown = "".join(page.text)
    missing = [field for field in FIELDS if payload(field) not in shown]
    assert missing == []
    assert attr_breakout("source_uri_attr") in shown
    assert CRASH_NAME in shown


def test_hostile_file_name_in_a_link_stays_inside_its_attribute(hostile_out):
    out, report = hostile_out
    page = _parse(report.read_text())
    hrefs = [attrs["href"] for tag, attrs in page.tags if tag == "a" and attrs.get("href", "").startswith("sub-01/log")]
    assert hrefs == [f"sub-01/log/20260101-000000_x/{CRASH_NAME}"]  # the whole name, one attribute
    assert (out / hrefs[0]).is_file()


def test_group_report_shows_hostile_values_as_text(hostile_out):
    out, _ = hostile_out
    summary = write_group_reports(out)
    page = _parse(summary.html.read_text())
    assert [tag for tag, _ in page.tags].count("script") == 1  # the table's own sort script, no other
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.lower().startswith("on")]
    assert handlers == []
    assert not [attrs for tag, attrs in page.tags if tag == "img" and attrs.get("src") == "x"]
    shown = "".join(page.text)
    assert payload("mask_warning") in shown  # the MaskQC warning column
    assert 'steal("' not in summary.html.read_text()  # quotes escaped wherever a payload appears
