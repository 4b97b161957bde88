"""Fast runner tests: exit 1 for a failed participant, and --stop-on-first-crash, on a real nipype run.

The CLI, the plan, the runner, nipype's Linear plugin, crash files and the summary are all real;
only the participant workflows are replaced by one tiny node each (no conform, masks or model),
so a run takes a couple of seconds. sub-01's node raises the DataError a real node would; the
node of sub-02 writes a marker file.
"""

from __future__ import annotations

import re
from pathlib import Path

import fixtures_bids as fx
import pytest

T1 = dict(fx.EYETRACKING_T1W)


def _node_task(subject: str, source: str, marker: str) -> str:
    from pathlib import Path as _Path

    from tumsyn_bids.errors import DataError

    if subject == "01":
        raise DataError("image has no usable intensity range (stub node)", path=source)
    _Path(marker).write_text("ran")
    return marker


@pytest.fixture
def stub_runner(monkeypatch, tmp_path):
    """Participant workflows of one Function node each; no weights, no reports."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from tumsyn_bids import runner
    from tumsyn_bids.models import preflight
    from tumsyn_bids.workflows import base

    markers: dict[str, Path] = {}

    def init_tumsyn_wf(jobs_by_subject, opts, base_dir, crash_dirs=None):
        if "03" in jobs_by_subject:  # a brain mask whose QC failed, as the outputs node writes it
            from tumsyn_bids.bids.derivatives import atomic_write_json, mask_relpath, sidecar_path

            mask = opts.out_dir / mask_relpath("sub-03/anat/sub-03_T1w.nii.gz")
            mask.parent.mkdir(parents=True, exist_ok=True)
            mask.write_bytes(b"mask")
            atomic_write_json(sidecar_path(mask), {"MaskQC": {
                "Method": "template-registration-antspyx", "VolumeML": 4189.1, "SupportDice": 0.894,
                "Warning": "brain mask (template-registration-antspyx) looks wrong: volume 4189 mL is outside "
                           "the plausible 700-2300 mL"}})
        workflow = pe.Workflow(name="stub_wf", base_dir=str(base_dir))
        workflow.config["execution"].update({"crashfile_format": "txt", "poll_sleep_duration": 0.05})
        for subject, jobs in sorted(jobs_by_subject.items()):
            markers[subject] = tmp_path / f"ran-{subject}"
            sub_wf = pe.Workflow(name=f"sub_{subject}_wf")
            node = pe.Node(niu.Function(input_names=["subject", "source", "marker"], output_names=["out"],
                                        function=_node_task), name="task")
            node.inputs.subject, node.inputs.source = subject, str(jobs[0].output.source_path)
            node.inputs.marker = str(markers[subject])
            node.config = {"execution": {"crashdump_dir": str(crash_dirs[subject])}}
            sub_wf.add_nodes([node])
            workflow.add_nodes([sub_wf])
        return workflow

    monkeypatch.setattr(base, "init_tumsyn_wf", init_tumsyn_wf)
    monkeypatch.setattr(preflight, "quick_weights_sha256", lambda settings: None)
    monkeypatch.setattr(preflight, "model_identity", lambda settings: ("stub-model", "0" * 64))
    monkeypatch.setattr(runner, "_write_reports", lambda out_dir, subjects, run_info: [])
    return markers


def _dataset(tmp_path: Path) -> Path:
    return fx.make_dataset(tmp_path / "bids", {f"sub-{s}/anat/sub-{s}_T1w.nii.gz": T1 for s in ("01", "02")})


def test_a_failed_participant_exits_1_and_the_other_finishes(cli, tmp_path, stub_runner):
    bids = _dataset(tmp_path)
    code, out, err = cli(bids, tmp_path / "out", "participant", "-w", tmp_path / "work", "--nprocs", "1")
    assert code == 1, err
    assert stub_runner["02"].read_text() == "ran"  # the other participant still ran
    assert re.search(r"^  sub-01: FAILED: \S+sub-01_T1w.nii.gz: image has no usable intensity range \(stub node\)"
                     r" \(crash file: \S+sub-01/log/\S+/crash-\S+\)$", err, re.M), err
    assert re.search(r"^  sub-02: ok", err, re.M)
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"tumsyn-bids: error: \S+/bids/sub-01/anat/sub-01_T1w.nii.gz: image has no usable "
                        r"intensity range \(stub node\)", last), last
    assert "Traceback" not in err + out
    crash = list((tmp_path / "out" / "sub-01" / "log").glob("*/crash-*"))
    assert len(crash) == 1 and "DataError" in crash[0].read_text()
    assert not list((tmp_path / "out" / "sub-02" / "log").glob("*/crash-*"))


def test_stop_on_first_crash_stops_the_run(cli, tmp_path, stub_runner):
    bids = _dataset(tmp_path)
    code, out, err = cli(bids, tmp_path / "out", "participant", "-w", tmp_path / "work", "--nprocs", "1",
                         "--stop-on-first-crash")
    assert code == 1, err
    assert not stub_runner["02"].exists()  # sub-02's node never ran
    assert re.search(r"^  sub-01: FAILED: \S+sub-01_T1w.nii.gz: image has no usable intensity range", err, re.M), err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tumsyn-bids: error: ") and "sub-01_T1w.nii.gz: image has no usable intensity range" in last
    assert "Traceback" not in err + out


def test_all_participants_ok_exits_0(cli, tmp_path, stub_runner):
    bids = fx.make_dataset(tmp_path / "bids", {f"sub-{s}/anat/sub-{s}_T1w.nii.gz": T1 for s in ("02", "03")})
    code, out, err = cli(bids, tmp_path / "out", "participant", "-w", tmp_path / "work", "--nprocs", "1")
    assert code == 0, err
    assert stub_runner["02"].is_file() and stub_runner["03"].is_file()
    assert "error" not in err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err  # the mask that failed its QC, named, once; the other says nothing
    assert re.fullmatch(r"tumsyn-bids: warning: \S+/out/sub-03/anat/sub-03_desc-brain_mask.nii.gz: brain mask "
                        r"\(template-registration-antspyx\) looks wrong: volume 4189 mL is outside the plausible "
                        r"700-2300 mL \(source sub-03_T1w.nii.gz; synthesis used it\)", warnings[0]), warnings[0]
    assert err.index(warnings[0]) < err.index("  sub-02: ok")  # before the summary
