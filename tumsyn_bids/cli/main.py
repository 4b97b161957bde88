"""``tumsyn-bids BIDS_DIR OUTPUT_DIR {participant,group}``: the BIDS-App entry point.

The CLI only parses, validates, builds :class:`~tumsyn_bids.config.Settings`, plans and hands over
to ``tumsyn_bids.runner``
(settings are built in :mod:`tumsyn_bids.cli.settings`). Heavy libraries (torch, ants, nipype, nilearn,
matplotlib) are never imported here; pybids and nibabel only once a run really starts.
Option names and aliases follow fMRIPrep; multi-value options take several values after one flag
(``--participant-label 01 02``), see :func:`tumsyn_bids.cli.options.expand_multi_value`.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import typer

from tumsyn_bids import __version__
from tumsyn_bids.cli.settings import AnalysisLevel, Device, InferenceMode, SkullStrip, Sources, build_settings
from tumsyn_bids.errors import ExitCode, OutputError, TumsynError, UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps start-up light
    from tumsyn_bids.config import Settings

PROG = "tumsyn-bids"
LOGGER = logging.getLogger("tumsyn_bids")

app = typer.Typer(
    name=PROG,
    help="Synthesize missing MRI contrasts of a BIDS dataset (TUMSyn, text-guided, any voxel size).",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit(0)


_BIDS = "BIDS input"
_PERF = "Performance and workflow"
_SYN = "Synthesis"
_OUT = "Outputs"


@app.command()
def run_app(
    bids_dir: Path = typer.Argument(..., help="Root of the BIDS dataset (read-only)."),
    output_dir: Path = typer.Argument(..., help="Where derivatives go, e.g. BIDS_DIR/derivatives/tumsyn."),
    analysis_level: AnalysisLevel = typer.Argument(..., help="participant: synthesize; group: aggregate QC."),
    participant_label: Optional[list[str]] = typer.Option(
        None, "--participant-label", "--participant_label", "--participant-labels", "--participant_labels",
        metavar="LABEL",
        help="Participant label(s), with or without 'sub-' (several after one flag). Default: all.",
        rich_help_panel=_BIDS),
    session_label: Optional[list[str]] = typer.Option(
        None, "--session-label", "--session_label", "--session-id", metavar="LABEL",
        help="Session label(s), with or without 'ses-'. Default: all.", rich_help_panel=_BIDS),
    bids_filter_file: Optional[Path] = typer.Option(
        None, "--bids-filter-file", "--bids_filter_file", metavar="FILE",
        help='JSON {query: {entity: value}}, queries t1w,t2w,flair,pdw,t2starw,swi,anat; '
             'null = entity absent, "*" = any.',
        rich_help_panel=_BIDS),
    skip_bids_validation: bool = typer.Option(
        False, "--skip-bids-validation", "--skip_bids_validation", "--skip_bids_validator",
        help="Do not validate the dataset (a missing dataset_description.json becomes a warning).",
        rich_help_panel=_BIDS),
    bids_database_dir: Optional[Path] = typer.Option(
        None, "--bids-database-dir", metavar="DIR",
        help="Reuse/store the pybids index here (default: WORK_DIR/<run_uuid>/bids_db).", rich_help_panel=_BIDS),
    work_dir: Optional[Path] = typer.Option(
        None, "-w", "--work-dir", "--work_dir", metavar="DIR",
        help="Working directory (default: ./work); must not be inside BIDS_DIR.", rich_help_panel=_PERF),
    clean_workdir: bool = typer.Option(
        False, "--clean-workdir", help="Empty the work directory first (unsafe with concurrent runs).",
        rich_help_panel=_PERF),
    nprocs: Optional[int] = typer.Option(
        None, "--nprocs", "--nthreads", "--n-cpus", "--n_cpus", min=1, metavar="N",
        help="Maximum number of parallel processes (default: all CPUs).", rich_help_panel=_PERF),
    omp_nthreads: Optional[int] = typer.Option(
        None, "--omp-nthreads", "--omp_nthreads", min=1, metavar="N", help="Threads per process.",
        rich_help_panel=_PERF),
    mem: Optional[str] = typer.Option(
        None, "--mem", "--mem-mb", "--mem_mb", metavar="SIZE",
        help="Memory limit; megabytes unless suffixed (8000, 8000M, 8G).", rich_help_panel=_PERF),
    use_plugin: Optional[Path] = typer.Option(
        None, "--use-plugin", "--nipype-plugin-file", metavar="FILE",
        help="Nipype plugin YAML (plugin: MultiProc, plugin_args: {...}).", rich_help_panel=_PERF),
    stop_on_first_crash: bool = typer.Option(
        False, "--stop-on-first-crash", help="Stop at the first failure instead of finishing the others.",
        rich_help_panel=_PERF),
    resource_monitor: bool = typer.Option(
        False, "--resource-monitor", help="Record nipype's resource use (accepted).", rich_help_panel=_PERF),
    notrack: bool = typer.Option(False, "--notrack", help="Accepted for compatibility; tumsyn never tracks.",
                                 rich_help_panel=_PERF),
    target: Optional[list[str]] = typer.Option(
        None, "--target", "--targets", metavar="CONTRAST",
        help="Contrast(s) to synthesize: T1w, T2w, FLAIR, PDw, T2starw, SWI, T1CE (default: T2w).",
        rich_help_panel=_SYN),
    voxel: Optional[list[str]] = typer.Option(
        None, "--voxel", metavar="X Y Z", help="Output voxel size in mm (default: the source's).",
        rich_help_panel=_SYN),
    source: Optional[list[str]] = typer.Option(
        None, "--source", metavar="SPEC",
        help='Input image: a suffix (T2w), entities + suffix (acq-mprage_T1w) or JSON filters. Default: rule in docs. '
             'Repeat to synthesize from several sources.',
        rich_help_panel=_SYN),
    sources: Optional[Sources] = typer.Option(
        None, "--sources",
        help="single (default): one source, as chosen by the rule; auto: every usable contrast of the session other "
             "than the target informs the synthesis (registered to the first; README: Multi-source synthesis).",
        rich_help_panel=_SYN),
    tr: Optional[float] = typer.Option(None, "--tr", metavar="MS", help="Target TR in ms (default: protocol table).",
                                       rich_help_panel=_SYN),
    te: Optional[float] = typer.Option(None, "--te", metavar="MS", help="Target TE in ms.", rich_help_panel=_SYN),
    ti: Optional[float] = typer.Option(None, "--ti", metavar="MS", help="Target TI in ms.", rich_help_panel=_SYN),
    fa: Optional[str] = typer.Option(None, "--fa", metavar="DEG", help="Target flip angle in degrees, or T2var.",
                                     rich_help_panel=_SYN),
    field_strength: Optional[float] = typer.Option(
        None, "--field-strength", metavar="TESLA",
        help="Field strength in tesla for the prompt (default: source sidecar).",
        rich_help_panel=_SYN),
    vendor: Optional[str] = typer.Option(None, "--vendor", metavar="NAME",
                                         help="Scanner vendor for the prompt (Siemens, GE, Philips).",
                                         rich_help_panel=_SYN),
    device: Device = typer.Option(Device.auto, "--device", help="Where the network runs.", rich_help_panel=_SYN),
    model: str = typer.Option("tumsyn-small", "--model", metavar="NAME", help="Model name in the registry.",
                              rich_help_panel=_SYN),
    weights: Optional[Path] = typer.Option(None, "--weights", metavar="PATH",
                                           help="Checkpoint file, a folder with the published pair, or SYNTH:STAGE1.",
                                           rich_help_panel=_SYN),
    skull_strip: SkullStrip = typer.Option(SkullStrip.auto, "--skull-strip",
                                           help="auto: strip unless the source is already brain-only.",
                                           rich_help_panel=_SYN),
    inference_mode: InferenceMode = typer.Option(
        InferenceMode.fast, "--inference-mode", help="fast: batched engine; faithful: published tiling.",
        rich_help_panel=_SYN),
    skip_existing: bool = typer.Option(False, "--skip-existing",
                                       help="Skip a target the session already has as a raw image.",
                                       rich_help_panel=_SYN),
    output_spaces: Optional[list[str]] = typer.Option(
        None, "--output-spaces", "--output_spaces", metavar="SPACE",
        help="T1w (native, default) and/or MNI152NLin2009cAsym[:res-N].", rich_help_panel=_OUT),
    mask_output: bool = typer.Option(False, "--mask-output", help="Zero the synthesized image outside the brain mask.",
                                     rich_help_panel=_OUT),
    save_maps: bool = typer.Option(False, "--save-maps",
                                   help="Also write the predicted tissue maps (T1map, T2map, T2starmap, PDmap; "
                                        "model estimates) next to each synthetic image.",
                                   rich_help_panel=_OUT),
    refine: bool = typer.Option(True, "--refine/--no-refine",
                                help="Re-read each brain voxel of the source against the tissue relation and render "
                                     "the target from that (physics-structured models; README: Refinement).",
                                rich_help_panel=_SYN),
    dry_run: bool = typer.Option(False, "--dry-run", "--plan-only",
                                 help="Plan and print the plan (also WORK_DIR/<run_uuid>/plan.json); run nothing."),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More output (-vvv: debug + tracebacks)."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> int:
    """Synthesize missing contrasts (participant) or aggregate QC (group)."""
    del version
    values = dict(locals())
    _STATE["verbosity"] = verbose
    settings = build_settings(values)
    return execute(settings)


_STATE: dict = {"verbosity": 0, "settings": None}


def _warn(message: str) -> None:
    typer.echo(f"{PROG}: warning: {message}", err=True)


def _info(message: str, level: int = 1) -> None:
    if _STATE["verbosity"] >= level:
        typer.echo(f"{PROG}: {message}", err=True)


def prepare_directories(settings: "Settings") -> None:
    """Create output and work directories (73 on failure); honour --clean-workdir first."""
    if settings.clean_workdir and settings.work_dir.is_dir():
        _warn(f"{settings.work_dir}: --clean-workdir empties it (unsafe if another run uses it)")
        shutil.rmtree(settings.work_dir, ignore_errors=True)
    for label, path in (("OUTPUT_DIR", settings.output_dir), ("work directory", settings.run_dir)):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {label} ({exc.strerror or exc})", path=path) from exc
        if not _writable(path):
            raise OutputError(f"{label} is not writable", path=path)


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK | os.X_OK)


def validate(settings: "Settings") -> None:
    """BIDS validation (16) unless skipped; skipped still warns about a bad description."""
    from tumsyn_bids.bids.validation import BidsValidationError, check_description, validate_dataset

    if settings.skip_bids_validation:
        try:
            check_description(settings.bids_dir)
        except BidsValidationError as exc:
            _warn(f"{exc} (validation skipped)")
        return
    for line in validate_dataset(settings.bids_dir, settings.participant_labels or None):
        _warn(line)


def _load_runner():
    try:
        return importlib.import_module("tumsyn_bids.runner")
    except ModuleNotFoundError as exc:
        if exc.name == "tumsyn_bids.runner":
            return None
        raise


def execute(settings: "Settings") -> int:
    """Validate, prepare directories, plan, and hand over to the runner; return the exit code."""
    _STATE["settings"] = settings
    if settings.analysis_level == "group":
        # The group level reads OUTPUT_DIR only: no validation of BIDS_DIR, no work directory.
        if not settings.output_dir.is_dir():
            raise UsageError("group level needs participant-level outputs; OUTPUT_DIR does not exist",
                             path=settings.output_dir)
        if not _writable(settings.output_dir):
            raise OutputError("OUTPUT_DIR is not writable", path=settings.output_dir)
        _STATE["settings"] = None  # no run directory for crash logs
        runner = _load_runner()
        if runner is None:
            typer.echo(f"{PROG}: group-level analysis is not yet implemented", err=True)
            return int(ExitCode.SOFTWARE)
        return int(runner.run_group_level(settings))

    if settings.save_maps:  # a model without tissue maps: one line, exit 64, nothing written
        from tumsyn_bids.models.preflight import check_save_maps

        check_save_maps(settings)
    validate(settings)
    prepare_directories(settings)
    config_path = settings.to_toml()
    _info(f"settings written to {config_path}")
    from tumsyn_bids.planning import build_plan

    plan = build_plan(settings)
    from tumsyn_bids.atomic import atomic_write_text

    atomic_write_text(settings.run_dir / "plan.json", plan.to_json())
    for line in plan.warnings:
        _warn(line)
    if not plan.outputs:
        return _empty_plan_code(settings, plan)
    for line in plan.unreadable:
        _warn(line)
    for key, reasons in plan.skipped.items():
        for reason in reasons:
            _info(f"{key}: skipped {reason}")
    for key in plan.sessions_without_source:
        if key not in plan.failed:  # a failed session is reported with the run's summary
            _warn(f"{key}: no usable source image; nothing will be synthesized for it")
    _info(f"planned {len(plan.outputs)} output(s); plan written to {settings.run_dir / 'plan.json'}")
    if settings.dry_run:
        from tumsyn_bids.planning import format_plan

        typer.echo(format_plan(plan, settings.bids_dir))
        return int(ExitCode.OK)
    runner = _load_runner()
    if runner is None:
        typer.echo(
            f"{PROG}: participant-level synthesis is not yet implemented; "
            f"the plan ({len(plan.outputs)} output(s)) is in {settings.run_dir / 'plan.json'}",
            err=True,
        )
        return int(ExitCode.SOFTWARE)
    return int(runner.run_participant_level(settings, plan))


def _empty_plan_code(settings: "Settings", plan) -> int:
    """Exit code when nothing is planned: 0 (all exist), 65 (sources unreadable) or 66 (no source)."""
    from tumsyn_bids.errors import DataError, NoInputError

    if not plan.skipped:
        raise NoInputError("no participant/session with anat images matches the selection", path=settings.bids_dir)
    if not plan.sessions_without_source:
        typer.echo(f"{PROG}: every requested target already exists (--skip-existing): nothing to do", err=True)
        return int(ExitCode.OK)
    if plan.unreadable:
        more = f" (and {len(plan.unreadable) - 1} more)" if len(plan.unreadable) > 1 else ""
        for line in plan.unreadable[1:]:
            _warn(line)
        raise DataError(f"{plan.unreadable[0]}{more}; no other usable source image")
    sessions = plan.sessions_without_source
    listed = ", ".join(sessions[:5]) + (f" and {len(sessions) - 5} more" if len(sessions) > 5 else "")
    first_reason = plan.skipped[sessions[0]][0]
    raise NoInputError(f"nothing to synthesize for {listed} ({first_reason})", path=settings.bids_dir)


def _report_error(message: str, exc: BaseException | None = None) -> None:
    typer.echo(f"{PROG}: error: {message}", err=True)
    if exc is not None and _STATE["verbosity"] >= 3:
        traceback.print_exception(exc, file=sys.stderr)


def _crash_log(exc: BaseException) -> Path | None:
    settings = _STATE.get("settings")
    if settings is None:
        return None
    try:
        log_dir = settings.run_dir / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "crash-cli.txt"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        return path
    except OSError:
        return None


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """Usage-error, abort and other click exception classes (typer >= 0.2x vendors click)."""
    modules = []
    try:
        from typer._click import exceptions as vendored

        modules.append(vendored)
    except ImportError:  # pragma: no cover - older typer uses click itself
        pass
    try:
        from click import exceptions as upstream

        modules.append(upstream)
    except ImportError:  # pragma: no cover
        pass
    return (
        tuple(m.UsageError for m in modules),
        (typer.Abort,) + tuple(m.Abort for m in modules if hasattr(m, "Abort")),
        tuple(m.ClickException for m in modules),
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run, and return the exit code."""
    from tumsyn_bids.cli.options import expand_multi_value

    _STATE.update(verbosity=0, settings=None)
    args = expand_multi_value(list(sys.argv[1:] if argv is None else argv))
    usage_errors, aborts, click_errors = _click_exceptions()
    command = typer.main.get_command(app)
    if not args:  # like a missing positional argument: the usage, then exit 64
        command.main(args=["--help"], prog_name=PROG, standalone_mode=False)
        _report_error("missing arguments BIDS_DIR OUTPUT_DIR {participant,group}")
        return int(ExitCode.USAGE)
    try:
        result = command.main(args=args, prog_name=PROG, standalone_mode=False)
    except usage_errors as exc:
        hint = f" (try '{PROG} --help')"
        _report_error(f"{exc.format_message()}{hint}")
        return int(ExitCode.USAGE)
    except aborts:
        _report_error("aborted")
        return 130
    except click_errors as exc:
        _report_error(exc.format_message())
        return int(ExitCode.USAGE)
    except TumsynError as exc:
        _report_error(str(exc), exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _report_error("interrupted")
        return 130
    except Exception as exc:  # an internal error: one line here, the traceback in the log
        where = _crash_log(exc)
        _report_error(
            f"internal error: {type(exc).__name__}: {exc}"
            + (f" (traceback in {where})" if where else " (rerun with -vvv for the traceback)"),
            exc,
        )
        return int(ExitCode.SOFTWARE)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``tumsyn-bids``, ``python -m tumsyn_bids``)."""
    sys.exit(run(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
