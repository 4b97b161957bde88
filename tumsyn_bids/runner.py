"""Run the participant and group levels: plan records, no-op check, the nipype run, summary, exit code.

The CLI (``tumsyn-bids``) builds :class:`~tumsyn_bids.config.Settings` and the plan
and calls :func:`run_participant_level` or :func:`run_group_level`; both return an exit code
(:class:`tumsyn_bids.errors.ExitCode`). A participant that fails does not stop the others (unless
``--stop-on-first-crash``); the run then exits 1 and names it in the summary.

Where things live: the device check in :mod:`tumsyn_bids.inference.device`, the model checks in
:mod:`tumsyn_bids.models.preflight`, every output path in
:func:`tumsyn_bids.bids.derivatives.output_paths`, the no-op check and the jobs still to do in
:mod:`tumsyn_bids.workflows.jobs`, the nipype run in :mod:`tumsyn_bids.workflows.execution`.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tumsyn_bids.bids.derivatives import remove_stale_temporaries
from tumsyn_bids.errors import ExitCode
from tumsyn_bids.workflows.execution import console as _console
from tumsyn_bids.workflows.execution import ensure_dir as _ensure_dir
from tumsyn_bids.workflows.execution import failure_message
from tumsyn_bids.workflows.jobs import make_jobs, paths_of

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.config import Settings
    from tumsyn_bids.planning import Plan

LOGGER = logging.getLogger("tumsyn")


def console_log_level(verbosity: int) -> int | None:
    """Log records also shown on the console: none by default, warnings at -vv, everything at -vvv."""
    if verbosity >= 3:
        return logging.DEBUG
    if verbosity == 2:
        return logging.WARNING
    return None


def write_plan_records(settings: "Settings", plan: "Plan") -> None:
    """``sub-X/log/tumsyn_plan.json``: what was planned per participant (the group level reads it)."""
    from tumsyn_bids.bids.derivatives import atomic_write_json, dataset_relpath, synthetic_relpath
    from tumsyn_bids.reports.collect import PLAN_FILE

    per_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for output in plan.outputs:
        per_subject[output.subject].append({
            "output": paths_of(settings, output).image.as_posix(),
            "source": dataset_relpath(output.source_path, settings.bids_dir),
            "target": output.target,
            "prompt": output.prompt.text(),
            **({"extra_sources": [dataset_relpath(e.path, settings.bids_dir) for e in output.extra_sources]}
               if output.extra_sources else {}),
        })
    for key, message in plan.failed.items():  # no usable source: planned, not written (the group level lists it)
        for target in settings.targets:
            per_subject[key.split("_")[0][len("sub-"):]].append({
                "output": synthetic_relpath(f"{key}_T1w.nii.gz", target).as_posix(),
                "source": None, "target": target, "prompt": None, "failed": message,
            })
    for subject, outputs in per_subject.items():
        atomic_write_json(Path(settings.output_dir) / f"sub-{subject}" / "log" / PLAN_FILE,
                          {"run_uuid": settings.run_uuid, "outputs": outputs})


def run_participant_level(settings: "Settings", plan: "Plan") -> int:
    """Synthesize every planned output; write derivatives and reports; return the exit code."""
    from tumsyn_bids.inference.device import check_device

    check_device(settings.device)  # before anything is written: one line, exit 70
    _ensure_dir(Path(settings.output_dir))
    _ensure_dir(Path(settings.work_dir))
    log_dir = Path(settings.output_dir) / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:  # no log file: the console still gets every line
        return _run_participant_level(settings, plan, None)
    from tumsyn_bids.logs import routed

    log_path = log_dir / f"tumsyn-{settings.run_uuid}.log"
    with routed(log_path, console_log_level(settings.verbosity)):
        return _run_participant_level(settings, plan, log_path)


def _run_participant_level(settings: "Settings", plan: "Plan", log_path: Path | None) -> int:
    from tumsyn_bids.bids.derivatives import write_dataset_files
    from tumsyn_bids.inference.device import wants_gpu
    from tumsyn_bids.models import preflight

    out_dir, bids_dir = Path(settings.output_dir), Path(settings.bids_dir)
    console = _console()
    write_dataset_files(out_dir, bids_dir)

    remove_stale_temporaries(out_dir, sorted({o.subject for o in plan.outputs}))
    write_plan_records(settings, plan)
    digest = preflight.quick_weights_sha256(settings)  # a no-op rerun needs neither torch nor nipype
    jobs, done = make_jobs(settings, plan, None, digest) if digest else (None, [])
    if jobs is None or jobs:  # something to run: load (and so check) the weights
        model_name, sha256 = preflight.model_identity(settings)
        jobs, done = make_jobs(settings, plan, model_name, sha256)
    for rel in done:
        LOGGER.info("up to date (same prompt, model and weights): %s", rel)
    _log_plan(plan)
    planning_failed = plan.failed_subjects
    if not jobs:
        console.print(f"tumsyn: all {len(done)} planned outputs are up to date in {out_dir}")
        failures = _write_reports(out_dir, sorted(_missing_reports(out_dir, plan)), {"Run": settings.run_uuid})
        write_dataset_files(out_dir, bids_dir)
        for subject, message in sorted(planning_failed.items()):
            console.print(f"  sub-{subject}: FAILED: {message}", markup=False)
            LOGGER.error("sub-%s failed: %s", subject, message)
        messages = list(planning_failed.values()) + failures
        _final_error(messages, sorted(f"sub-{s}" for s in planning_failed))
        return int(ExitCode.PARTICIPANT_FAILED if messages else ExitCode.OK)

    device = settings.device
    for subject, subject_jobs in sorted(jobs.items()):
        for job in subject_jobs:
            out = job.output
            LOGGER.info("sub-%s: %s from %s | prompt %r | device %s | model %s | weights sha256 %s%s",
                        subject, out.target, out.source_path, out.prompt.text(), device, model_name, sha256,
                        f" | QC against {job.real_file}" if job.real_file else "")

    from tumsyn_bids.workflows.execution import run_workflow

    failed, node_seconds, wall = run_workflow(settings, jobs, wants_gpu(device))
    from tumsyn_bids.anat.outputs import mask_qc_warnings  # a brain mask failing its QC: one visible line each

    for line in mask_qc_warnings(out_dir, bids_dir, [j.output.source_path for s, js in sorted(jobs.items())
                                                     if s not in failed for j in js]):
        console.print(f"tumsyn-bids: warning: {line}", markup=False)
        LOGGER.warning("%s", line)
    from tumsyn_bids.anat.outputs import source_qc_warnings  # a further source dropped by its registration QC
    from tumsyn_bids.bids.derivatives import sidecar_path

    for line in source_qc_warnings([sidecar_path(out_dir / paths_of(settings, j.output).image)
                                    for s, js in sorted(jobs.items()) if s not in failed for j in js
                                    if j.output.extra_sources]):
        console.print(f"tumsyn-bids: warning: {line}", markup=False)
        LOGGER.warning("%s", line)

    subjects = sorted(set(jobs) | _missing_reports(out_dir, plan))
    report_failures = _write_reports(out_dir, subjects, {
        "Run": settings.run_uuid, "Device requested": device, "Model": model_name,
        "Weights sha256": sha256, "Wall time of this run (s)": round(wall, 1),
    })
    write_dataset_files(out_dir, bids_dir)
    for name, seconds in sorted(node_seconds.items()):
        LOGGER.info("node %s: %.1f s", name, seconds)
    return _summary(settings, jobs, done, failed, report_failures, wall, log_path, console, planning_failed)


def _log_plan(plan: "Plan") -> None:
    """Every planned output's source choice and its reasons (duplicate runs included) in the run log."""
    for output in plan.outputs:
        LOGGER.info("%s: source %s chosen: %s", output.key, output.source_path, "; ".join(output.reasons))
        for extra in output.extra_sources:
            LOGGER.info("%s: further source %s (%s, prompt %r), registered rigidly to %s", output.key, extra.path,
                        extra.contrast, extra.prompt.text() if extra.prompt else None, output.source_path.name)
        for note in output.notes:
            LOGGER.info("%s: metadata note: %s", output.key, note)
    for line in plan.unreadable:
        LOGGER.warning("passed over: %s", line)
    for line in plan.warnings:
        LOGGER.warning("%s", line)
    for key, message in plan.failed.items():
        LOGGER.error("%s: no usable source image: %s", key, message)


def _missing_reports(out_dir: Path, plan: "Plan") -> set[str]:
    """Planned participants whose sub-X.html is missing (e.g. after an interrupted run)."""
    return {o.subject for o in plan.outputs if not (out_dir / f"sub-{o.subject}.html").is_file()}


def _write_reports(out_dir: Path, subjects: list[str], run_info: dict[str, Any]) -> list[str]:
    """Write sub-X.html for ``subjects``; a failure is logged and returned, never raised."""
    from tumsyn_bids.reports.participant import write_participant_report

    failures = []
    for subject in subjects:
        try:
            write_participant_report(out_dir, subject, run_info=run_info)
        except Exception as exc:  # a report must not hide results, but it counts as a failure
            LOGGER.exception("sub-%s: report failed", subject)
            failures.append(f"sub-{subject}: report failed ({exc})")
    return failures


def _final_error(messages: list[str], subjects: list[str]) -> None:
    """The run's last stderr line: ``tumsyn-bids: error: <file>: <problem>`` (nothing when all is well)."""
    if not messages:
        return
    more = ""
    if len(subjects) > 1:
        more = f" ({len(subjects)} participants failed: {', '.join(subjects)})"
    elif len(messages) > 1:
        more = f" (and {len(messages) - 1} more error(s) above)"
    sys.stderr.write(f"tumsyn-bids: error: {messages[0]}{more}\n")
    sys.stderr.flush()


def _summary(settings, jobs, done, failed, report_failures, wall, log_path, console, planning_failed=None) -> int:
    from tumsyn_bids.reports.collect import crash_files, crash_summary

    planning_failed = dict(planning_failed or {})
    out_dir = Path(settings.output_dir)
    n_planned = sum(len(j) for j in jobs.values())
    console.print(f"tumsyn: {n_planned} output(s) run, {len(done)} already up to date, "
                  f"{len(set(jobs) | set(planning_failed))} participant(s), {wall:.1f} s")
    messages: list[str] = []
    failed_subjects: list[str] = []
    for subject in sorted(set(jobs) | set(planning_failed)):
        if subject in failed:
            crashes = crash_files(out_dir, subject)
            source = jobs[subject][0].output.source_path if jobs.get(subject) else None
            why = failure_message(crash_summary(out_dir / crashes[0]), source) if crashes else \
                f"{source}: " + "; ".join(failed[subject])
            where = f" (crash file: {out_dir / crashes[0]})" if crashes else ""
            console.print(f"  sub-{subject}: FAILED: {why}{where}", markup=False)
            LOGGER.error("sub-%s failed: %s%s", subject, why, where)
            messages.append(why)
            failed_subjects.append(f"sub-{subject}")
        elif subject in planning_failed:
            why = planning_failed[subject]
            console.print(f"  sub-{subject}: FAILED: {why}", markup=False)
            LOGGER.error("sub-%s failed: %s", subject, why)
            messages.append(why)
            failed_subjects.append(f"sub-{subject}")
        else:
            console.print(f"  sub-{subject}: ok (report: {out_dir / f'sub-{subject}.html'})", markup=False)
        if subject in planning_failed and subject in failed:  # both: a session failed at planning too
            messages.append(planning_failed[subject])
    for line in report_failures:
        console.print(f"  {line}", markup=False)
        messages.append(line)
    if log_path is not None:
        console.print(f"  log: {log_path}", markup=False)
    _final_error(messages, failed_subjects)
    return int(ExitCode.PARTICIPANT_FAILED if messages else ExitCode.OK)


# --------------------------------------------------------------------------------------------
# group level
# --------------------------------------------------------------------------------------------
def run_group_level(settings: "Settings") -> int:
    """Aggregate participant outputs found in out_dir into TSV tables and an HTML page."""
    from tumsyn_bids.reports.group import write_group_reports

    summary = write_group_reports(settings.output_dir)
    console = _console()
    console.print(f"tumsyn group: {summary.n_outputs} synthetic image(s); report {summary.html}")
    for target, path in sorted(summary.tables.items()):
        console.print(f"  {target}: {path}")
    for subject, items in sorted(summary.missing.items()):
        console.print(f"  {subject} is missing outputs: {'; '.join(items)}")
    return int(ExitCode.OK)
