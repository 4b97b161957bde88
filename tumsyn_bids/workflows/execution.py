"""Run the nipype graph of one participant-level run: plugin choice, progress bars, crash accounting.

:func:`run_workflow` builds the graph with :func:`tumsyn_bids.workflows.base.init_tumsyn_wf`, runs it
with the plugin the settings ask for (MultiProc by default when several participants run) and
returns, per participant, the nodes that failed (crash files are the ground truth).
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

from tumsyn_bids.errors import OutputError

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.config import Settings
    from tumsyn_bids.workflows.jobs import Job

LOGGER = logging.getLogger("tumsyn")
_SUBJECT_RE = re.compile(r"(?:^|\.)sub_([0-9a-zA-Z]+)_wf(?:\.|$)")


def console():
    """A rich console on stderr (the run's progress and summary lines)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def ensure_dir(path: Path) -> None:
    """``mkdir -p``; OutputError (exit 73) naming the folder when it cannot be created."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory ({exc.strerror})", path=path) from exc


def plugin_for(settings: "Settings", n_subjects: int, callback) -> tuple[str, dict[str, Any], int]:
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


class Progress:
    """Per-participant progress bars fed by nipype's status callback (runs in this process)."""

    def __init__(self, totals: dict[str, int], enabled: bool):
        self.failed: dict[str, list[str]] = defaultdict(list)
        self.started: dict[str, float] = {}
        self.node_seconds: dict[str, float] = {}
        self._starts: dict[str, float] = {}
        self._progress = None
        self._tasks: dict[str, Any] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), console=console(), transient=False)
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


def run_workflow(settings: "Settings", jobs: dict[str, list["Job"]], use_gpu: bool
                 ) -> tuple[dict[str, list[str]], dict[str, float], float]:
    """Build and run the graph; return (failed nodes per participant, seconds per node, wall time)."""
    from tumsyn_bids.bids.derivatives import template_spaces
    from tumsyn_bids.workflows.base import RunOptions, init_tumsyn_wf

    crash_dirs = {s: Path(settings.output_dir) / f"sub-{s}" / "log" / settings.run_uuid for s in jobs}
    for path in crash_dirs.values():
        ensure_dir(path)
    name, args, omp = plugin_for(settings, len(jobs), None)
    opts = RunOptions(
        bids_dir=Path(settings.bids_dir), out_dir=Path(settings.output_dir), model=settings.model,
        weights=str(settings.weights) if settings.weights else None, device=settings.device, use_gpu=use_gpu,
        mode=settings.inference_mode, skull_strip=settings.skull_strip, mask_output=settings.mask_output,
        save_maps=settings.save_maps, refine=settings.refine, omp_nthreads=omp,
        template_spaces=template_spaces(settings.output_spaces),
    )
    workflow = init_tumsyn_wf(jobs, opts, base_dir=Path(settings.work_dir), crash_dirs=crash_dirs)
    if settings.stop_on_first_crash:
        workflow.config["execution"]["stop_on_first_crash"] = "true"
    totals = {s: count_work_nodes(workflow, f"sub_{s}_wf.") for s in jobs}
    enabled = settings.verbosity >= 0 and sys.stderr is not None
    with Progress(totals, enabled) as progress:
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


def count_work_nodes(workflow, prefix: str) -> int:
    """Nodes that really run (identity nodes are removed from nipype's execution graph)."""
    from nipype.interfaces.utility import IdentityInterface

    names = [n for n in workflow.list_node_names() if n.startswith(prefix)]
    return sum(1 for n in names if not isinstance(workflow.get_node(n).interface, IdentityInterface))


_TUMSYN_ERRORS = {"TumsynError", "UsageError", "DataError", "NoInputError", "OutputError", "DeviceError"}
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?P<cls>[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)): ?(?P<text>.*)$")


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
