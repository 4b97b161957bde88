"""Run the participant and group levels: build the nipype workflow, run it, summarise, exit code.

The CLI (``tumsyn_bids.cli.main``) builds :class:`~tumsyn_bids.config.Settings` and the plan
and calls :func:`run_participant_level` or :func:`run_group_level`; both return an exit code
(DESIGN.md section 8). A participant that fails does not stop the others (unless
``--stop-on-first-crash``); the run then exits 1 and names it in the summary.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tumsyn_bids.errors import ExitCode, OutputError

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.config import Settings
    from tumsyn_bids.planning import Plan, PlannedOutput
    from tumsyn_bids.workflows.jobs import Job

LOGGER = logging.getLogger("tumsyn")
_SUBJECT_RE = re.compile(r"(?:^|\.)sub_([0-9a-zA-Z]+)_wf(?:\.|$)")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _setup_logging(settings: "Settings") -> Path | None:
    """The run's log file ``out_dir/logs/tumsyn-<run_uuid>.log`` (None when it cannot be created).

    :func:`run_participant_level` routes tumsyn's and nipype's logging there (tumsyn_bids.logs).
    """
    log_dir = Path(settings.output_dir) / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return log_dir / f"tumsyn-{settings.run_uuid}.log"


def console_log_level(verbosity: int) -> int | None:
    """Log records also shown on the console: none by default, warnings at -vv, everything at -vvv."""
    if verbosity >= 3:
        return logging.DEBUG
    if verbosity == 2:
        return logging.WARNING
    return None


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory ({exc.strerror})", path=path) from exc


def _relative(path: Path, root: Path) -> str:
    from tumsyn_bids.bids.derivatives import dataset_relpath

    return dataset_relpath(path, root)


def output_relpath(settings: "Settings", output: "PlannedOutput") -> Path:
    """Where ``output``'s synthetic image goes, relative to out_dir."""
    from tumsyn_bids.bids.derivatives import synthetic_relpath

    return synthetic_relpath(_relative(output.source_path, settings.bids_dir), output.target)


def wants_gpu(device: str) -> bool:
    """Whether the synthesis nodes will use a GPU, decided without initialising CUDA here."""
    name = str(device).lower()
    if name.startswith("cuda"):
        return True
    if name != "auto":
        return False
    from nipype.utils.gpu_count import gpu_count

    return gpu_count() > 0


def check_device(device: str) -> None:
    """An explicitly requested CUDA device must exist (DeviceError, exit 70); ``auto``/``cpu`` need no check.

    Only ``cuda``/``cuda:N`` touch torch.cuda here (MultiProc workers start with forkserver, never fork).
    """
    if str(device).lower().startswith("cuda"):
        from tumsyn_bids.inference.device import resolve_device

        resolve_device(device)


def _model_identity(settings: "Settings") -> tuple[str, str]:
    """(model name, weights sha256), loading the weights once on CPU (checks them early)."""
    from tumsyn_bids.models.loading import load_model

    bundle = load_model(settings.model, str(settings.weights) if settings.weights else None, device="cpu")
    return bundle.name, bundle.sha256


def quick_weights_sha256(settings: "Settings") -> str | None:
    """sha256 of the weights file that load_model would use, when it is one file (else None).

    Uses the loader's own search order (:mod:`tumsyn_bids.models.locations`, no torch import).
    """
    from tumsyn_bids.models.locations import sha256_file, weights_candidates

    location = weights_candidates(settings.model, settings.weights)[0][1]
    path = Path(location)
    if os.pathsep in location or not path.is_file():
        return None
    return sha256_file(path)


def check_save_maps(settings: "Settings") -> None:
    """``--save-maps`` needs a model that predicts tissue maps: UsageError (exit 64) before anything is written.

    A model family without maps (``tumsyn-official``, ``lccd-small``) is refused from its name alone
    (no torch); otherwise the weights are loaded on CPU and asked (``--weights`` may hold any checkpoint).
    """
    from tumsyn_bids.errors import UsageError
    from tumsyn_bids.models.configs import PhysicsModelConfig, get_config

    if not getattr(settings, "save_maps", False):
        return
    message = "--save-maps: model {} does not predict tissue maps (only physics-structured models such as tumsyn-small do)"
    if not isinstance(get_config(settings.model), PhysicsModelConfig):
        raise UsageError(message.format(settings.model))
    from tumsyn_bids.anat.synthesis import predicts_tissue_maps
    from tumsyn_bids.models.loading import load_model

    bundle = load_model(settings.model, str(settings.weights) if settings.weights else None, device="cpu")
    if not predicts_tissue_maps(bundle):
        raise UsageError(message.format(f"{bundle.name} ({bundle.path})"))


def map_relpaths(settings: "Settings", output: "PlannedOutput") -> list[Path]:
    """Tissue maps of ``output`` that the run must write (none without ``--save-maps``)."""
    from tumsyn_bids.bids.derivatives import TISSUE_MAPS, map_relpath

    if not getattr(settings, "save_maps", False):
        return []
    rel_source = _relative(output.source_path, settings.bids_dir)
    return [map_relpath(rel_source, output.target, name) for name in TISSUE_MAPS]


def template_spaces(settings: "Settings") -> tuple[str, ...]:
    """The requested standard spaces (``T1w`` = native, always written)."""
    return tuple(s for s in (getattr(settings, "output_spaces", ()) or ()) if not s.startswith("T1w"))


def template_relpaths(settings: "Settings", output: "PlannedOutput") -> list[Path]:
    """Template-space copies of ``output`` that the run must write."""
    from tumsyn_bids.bids.derivatives import synthetic_relpath

    rel_source = _relative(output.source_path, settings.bids_dir)
    out = []
    for space in template_spaces(settings):
        name, _, spec = space.partition(":")
        res = spec[len("res-"):] if spec.startswith("res-") else None
        out.append(synthetic_relpath(rel_source, output.target, space=name, res=res))
    return out


def make_jobs(settings: "Settings", plan: "Plan", model_name: str | None, sha256: str) -> tuple[dict[str, list["Job"]], list[str]]:
    """Planned outputs still to do, per participant, and the relative paths already up to date."""
    from tumsyn_bids.anat.session import session_images
    from tumsyn_bids.bids.derivatives import is_up_to_date, mask_relpath
    from tumsyn_bids.workflows.jobs import Job

    jobs: dict[str, list[Job]] = defaultdict(list)
    done: list[str] = []
    out_dir = Path(settings.output_dir)
    for output in plan.outputs:
        rel = output_relpath(settings, output)
        mask = out_dir / mask_relpath(_relative(output.source_path, settings.bids_dir))
        templates_done = all((out_dir / p).is_file() for p in template_relpaths(settings, output))
        current = [out_dir / rel, *(out_dir / p for p in map_relpaths(settings, output))]  # maps: --save-maps
        if templates_done and mask.is_file() and all(
                is_up_to_date(path, prompt=output.prompt.text(), model_name=model_name, weights_sha256=sha256,
                              masked_output=settings.mask_output) for path in current):
            done.append(rel.as_posix())
            continue
        reals = session_images(output.source_path, output.target)
        t1ws = session_images(output.source_path, "T1w") if output.source_contrast not in {"T1w", "T1CE"} else []
        jobs[output.subject].append(Job(output=output, real_file=reals[0] if reals else None,
                                        t1w_file=t1ws[0] if t1ws else None))
    return dict(jobs), done


def write_plan_records(settings: "Settings", plan: "Plan") -> None:
    """``sub-X/log/tumsyn_plan.json``: what was planned per participant (the group level reads it)."""
    from tumsyn_bids.bids.derivatives import atomic_write_json, synthetic_relpath
    from tumsyn_bids.reports.collect import PLAN_FILE

    per_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for output in plan.outputs:
        per_subject[output.subject].append({
            "output": output_relpath(settings, output).as_posix(),
            "source": _relative(output.source_path, settings.bids_dir),
            "target": output.target,
            "prompt": output.prompt.text(),
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


def _plugin(settings: "Settings", n_subjects: int, callback) -> tuple[str, dict[str, Any], int]:
    """(plugin name, plugin args, omp threads) for this run."""
    n_procs = int(settings.nprocs or os.cpu_count() or 1)
    if settings.plugin_settings:
        name = str(settings.plugin_settings.get("plugin", "MultiProc"))
        args = dict(settings.plugin_settings.get("plugin_args") or {})
        n_procs = int(args.get("n_procs", args.get("nprocs", n_procs)))
    else:
        name = "MultiProc" if n_procs > 1 and n_subjects > 1 else "Linear"
        args = {}
    if name == "MultiProc":
        args.setdefault("n_procs", n_procs)
        args.setdefault("mp_context", "forkserver")  # never fork a parent that may hold CUDA state
        args.setdefault("raise_insufficient", False)
        if settings.mem_mb:
            args.setdefault("memory_gb", settings.mem_mb / 1024.0)
    args["status_callback"] = callback
    omp = settings.omp_nthreads or max(1, min(8, n_procs // max(1, min(n_subjects, n_procs))))
    return name, args, int(omp)


class _Progress:
    """Per-participant progress bars fed by nipype's status callback (runs in this process)."""

    def __init__(self, totals: dict[str, int], enabled: bool):
        self.failed: dict[str, list[str]] = defaultdict(list)
        self.started: dict[str, float] = {}
        self.node_seconds: dict[str, float] = {}
        self._starts: dict[str, float] = {}
        self._progress = None
        self._tasks: dict[str, Any] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=_console(), transient=False)
            for subject, total in sorted(totals.items()):
                self._tasks[subject] = self._progress.add_task(f"sub-{subject}", total=total)

    def __enter__(self):
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, node, status: str) -> None:
        name = getattr(node, "fullname", str(node))
        match = _SUBJECT_RE.search(name)
        subject = match[1] if match else None
        if status == "start":
            self._starts[name] = time.perf_counter()
            if subject:
                self.started.setdefault(subject, time.perf_counter())
            return
        if name in self._starts:
            self.node_seconds[name] = time.perf_counter() - self._starts.pop(name)
        if status == "exception" and subject:
            self.failed[subject].append(name)
        if subject and self._progress is not None and subject in self._tasks:
            self._progress.advance(self._tasks[subject])


# --------------------------------------------------------------------------------------------
# participant level
# --------------------------------------------------------------------------------------------
def run_participant_level(settings: "Settings", plan: "Plan") -> int:
    """Synthesize every planned output; write derivatives and reports; return the exit code."""
    check_device(settings.device)  # before anything is written: one line, exit 70
    out_dir = Path(settings.output_dir)
    _ensure_dir(out_dir)
    _ensure_dir(Path(settings.work_dir))
    log_path = _setup_logging(settings)
    if log_path is None:
        return _run_participant_level(settings, plan, None)
    from tumsyn_bids.logs import routed

    with routed(log_path, console_log_level(settings.verbosity)):
        return _run_participant_level(settings, plan, log_path)


def _run_participant_level(settings: "Settings", plan: "Plan", log_path: Path | None) -> int:
    from tumsyn_bids.bids.derivatives import write_dataset_files

    out_dir, bids_dir = Path(settings.output_dir), Path(settings.bids_dir)
    console = _console()
    write_dataset_files(out_dir, bids_dir)

    remove_stale_temporaries(out_dir, sorted({o.subject for o in plan.outputs}))
    write_plan_records(settings, plan)
    digest = quick_weights_sha256(settings)  # a no-op rerun needs neither torch nor nipype
    jobs, done = make_jobs(settings, plan, None, digest) if digest else (None, [])
    if jobs is None or jobs:  # something to run: load (and so check) the weights
        model_name, sha256 = _model_identity(settings)
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
    use_gpu = wants_gpu(device)
    for subject, subject_jobs in sorted(jobs.items()):
        for job in subject_jobs:
            out = job.output
            LOGGER.info("sub-%s: %s from %s | prompt %r | device %s | model %s | weights sha256 %s%s",
                        subject, out.target, out.source_path, out.prompt.text(), device, model_name, sha256,
                        f" | QC against {job.real_file}" if job.real_file else "")

    failed, node_seconds, wall = _run_workflow(settings, jobs, use_gpu)
    from tumsyn_bids.anat.outputs import mask_qc_warnings  # a brain mask failing its QC: one visible line each

    for line in mask_qc_warnings(out_dir, bids_dir, [j.output.source_path for s, js in sorted(jobs.items())
                                                     if s not in failed for j in js]):
        console.print(f"tumsyn-bids: warning: {line}", markup=False)
        LOGGER.warning("%s", line)

    subjects = sorted(set(jobs) | _missing_reports(out_dir, plan))
    report_failures = _write_reports(out_dir, subjects, {
        "Run": settings.run_uuid, "Device requested": device, "Model": model_name,
        "Weights sha256": sha256, "Wall time of this run (s)": round(wall, 1),
    })
    write_dataset_files(out_dir, bids_dir)
    _log_timings(node_seconds)
    return _summary(settings, jobs, done, failed, report_failures, wall, log_path, console, planning_failed)


def _log_plan(plan: "Plan") -> None:
    """Every planned output's source choice and its reasons (duplicate runs included) in the run log."""
    for output in plan.outputs:
        LOGGER.info("%s: source %s chosen: %s", output.key, output.source_path, "; ".join(output.reasons))
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


def _run_workflow(settings: "Settings", jobs: dict[str, list["Job"]], use_gpu: bool
                  ) -> tuple[dict[str, list[str]], dict[str, float], float]:
    from tumsyn_bids.workflows.base import RunOptions, init_tumsyn_wf

    crash_dirs = {s: Path(settings.output_dir) / f"sub-{s}" / "log" / settings.run_uuid for s in jobs}
    for path in crash_dirs.values():
        _ensure_dir(path)
    # Build once with a placeholder thread count to count nodes, then for real.
    name, args, omp = _plugin(settings, len(jobs), None)
    opts = RunOptions(
        bids_dir=Path(settings.bids_dir), out_dir=Path(settings.output_dir), model=settings.model,
        weights=str(settings.weights) if settings.weights else None, device=settings.device, use_gpu=use_gpu,
        mode=settings.inference_mode, skull_strip=settings.skull_strip, mask_output=settings.mask_output,
        save_maps=settings.save_maps, omp_nthreads=omp, template_spaces=template_spaces(settings),
    )
    workflow = init_tumsyn_wf(jobs, opts, base_dir=Path(settings.work_dir), crash_dirs=crash_dirs)
    if settings.stop_on_first_crash:
        workflow.config["execution"]["stop_on_first_crash"] = "true"
    totals = {s: _count_work_nodes(workflow, f"sub_{s}_wf.") for s in jobs}
    enabled = settings.verbosity >= 0 and sys.stderr is not None
    with _Progress(totals, enabled) as progress:
        args["status_callback"] = progress
        LOGGER.info("running %s with %s (threads per node: %d, GPU: %s)", workflow.name, name,
                    omp, use_gpu)
        start = time.perf_counter()
        try:
            workflow.run(plugin=name, plugin_args=args)
        except Exception as exc:  # nipype raises RuntimeError when any node crashed
            LOGGER.error("workflow finished with errors: %s", str(exc).splitlines()[0] if str(exc) else exc)
            if not progress.failed:
                for subject in jobs:
                    if list(crash_dirs[subject].glob("crash-*")):
                        progress.failed[subject].append("see crash files")
                if not progress.failed:
                    raise
        wall = time.perf_counter() - start
    for path in crash_dirs.values():
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # keep sub-X/log/<run_uuid>/ only when it holds crash files
    failed = dict(progress.failed)
    for subject in jobs:  # crash files are the ground truth (e.g. after stop-on-first-crash)
        if subject not in failed and crash_dirs[subject].is_dir() and list(crash_dirs[subject].glob("crash-*")):
            failed[subject] = ["see crash files"]
    return failed, progress.node_seconds, wall


def _count_work_nodes(workflow, prefix: str) -> int:
    """Nodes that really run (identity nodes are removed from nipype's execution graph)."""
    from nipype.interfaces.utility import IdentityInterface

    names = [n for n in workflow.list_node_names() if n.startswith(prefix)]
    return sum(1 for n in names if not isinstance(workflow.get_node(n).interface, IdentityInterface))


# A shared top-level file (dataset_description.json, .bidsignore) is written in milliseconds: a
# temporary of one older than this is a leftover, not another run's write in progress.
STALE_SHARED_TEMPORARY_S = 600.0


def remove_stale_temporaries(out_dir: Path, subjects, *, now: float | None = None) -> list[Path]:
    """Delete temporary files that a killed run left (atomic-write leftovers).

    Under ``sub-X/`` and ``.sub-X.html.*`` for this run's participants (no other run writes them),
    and other ``.*.tmp*`` files at the top of out_dir once older than
    :data:`STALE_SHARED_TEMPORARY_S` (a concurrent run may be writing a fresh one).
    """
    out_dir = Path(out_dir)
    subjects = list(subjects)
    now = time.time() if now is None else now
    removed = []
    for subject in subjects:
        for path in (out_dir / f"sub-{subject}").rglob(".*.tmp*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    own = tuple(f".sub-{subject}.html." for subject in subjects)
    for path in out_dir.glob(".*.tmp*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            old = now - path.stat().st_mtime > STALE_SHARED_TEMPORARY_S
        except OSError:
            continue
        if path.name.startswith(own) or old:
            path.unlink(missing_ok=True)
            removed.append(path)
    for path in removed:
        LOGGER.warning("removed a partial file left by an interrupted run: %s", path)
    return removed


def _log_timings(node_seconds: dict[str, float]) -> None:
    for name, seconds in sorted(node_seconds.items()):
        LOGGER.info("node %s: %.1f s", name, seconds)


_TUMSYN_ERRORS = {"TumsynError", "UsageError", "DataError", "NoInputError", "OutputError", "DeviceError"}
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?P<cls>[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)): ?(?P<text>.*)$")


def failure_message(crash_line: str, source: str | Path | None) -> str:
    """``<file>: <problem>`` from the last line of a crash file's traceback.

    A tumsyn error already names its file; any other exception is prefixed with ``source``.
    """
    line = crash_line.strip()
    where = f"{source}: " if source else ""
    match = _EXCEPTION_LINE.match(line)
    if match and match["cls"] in _TUMSYN_ERRORS and match["text"]:
        text = match["text"]
        named = text.split(": ", 1)[0]
        return text if ("/" in named or named.endswith((".nii", ".gz", ".json", ".pt", ".pth"))) else where + text
    return f"{where}{line}" if line else f"{where}failed (see the crash file)"


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
