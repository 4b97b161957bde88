"""``tumsyn prompts BIDS_DIR``: print every planned output and its prompt; runs nothing heavy.

Uses the same settings, discovery and planning as ``tumsyn-bids`` (no work directory, no pybids
database on disk, no network, no torch). Several values may be given comma-separated
(``--target T2w,FLAIR``) or by repeating the flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tumsyn_bids.errors import TumsynError


def prompts(
    bids_dir: Path = typer.Argument(..., help="Root of the BIDS dataset."),
    participant_label: Optional[list[str]] = typer.Option(
        None, "--participant-label", "--participant_label", metavar="LABEL", help="Participant label(s)."),
    session_label: Optional[list[str]] = typer.Option(None, "--session-label", metavar="LABEL",
                                                      help="Session label(s)."),
    target: Optional[list[str]] = typer.Option(None, "--target", metavar="CONTRAST",
                                               help="Contrast(s) to synthesize (default: T2w)."),
    voxel: Optional[list[str]] = typer.Option(None, "--voxel", metavar="MM",
                                              help="Output voxel size: repeat 3 times or give X,Y,Z."),
    source: Optional[list[str]] = typer.Option(None, "--source", metavar="SPEC",
                                               help="Input image selector (repeat for several sources)."),
    sources: Optional[str] = typer.Option(None, "--sources", metavar="auto|single",
                                          help="auto: every usable contrast informs the synthesis; single: one."),
    bids_filter_file: Optional[Path] = typer.Option(None, "--bids-filter-file", metavar="FILE"),
    tr: Optional[float] = typer.Option(None, "--tr", metavar="MS"),
    te: Optional[float] = typer.Option(None, "--te", metavar="MS"),
    ti: Optional[float] = typer.Option(None, "--ti", metavar="MS"),
    fa: Optional[str] = typer.Option(None, "--fa", metavar="DEG"),
    field_strength: Optional[float] = typer.Option(None, "--field-strength", metavar="TESLA"),
    vendor: Optional[str] = typer.Option(None, "--vendor", metavar="NAME"),
    skip_existing: bool = typer.Option(False, "--skip-existing"),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Print the plan (participant, session, source, target, voxel size, prompt, reasons)."""
    try:
        plan = _plan(locals())
    except TumsynError as exc:
        typer.echo(f"tumsyn prompts: error: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code)) from None
    for line in plan.warnings + plan.unreadable:  # implausible sidecar values, images passed over
        typer.echo(f"tumsyn prompts: warning: {line}", err=True)
    if as_json:
        typer.echo(plan.to_json())
        return
    from tumsyn_bids.planning import format_plan

    typer.echo(format_plan(plan, Path(bids_dir).resolve()))


def _plan(values: dict):
    from tumsyn_bids.bids.validation import BidsValidationError, check_description
    from tumsyn_bids.cli.settings import AnalysisLevel, Device, InferenceMode, SkullStrip, build_settings
    from tumsyn_bids.planning import build_plan

    voxel = values["voxel"]
    if voxel and len(voxel) == 1:
        voxel = voxel[0].replace(",", " ").split()
    bids_dir = Path(values["bids_dir"]).expanduser().resolve()
    raw = dict(values)
    raw.update(
        bids_dir=bids_dir, output_dir=bids_dir / "derivatives" / "tumsyn", analysis_level=AnalysisLevel.participant,
        work_dir=None, bids_database_dir=None, nprocs=None, omp_nthreads=None, mem=None, use_plugin=None,
        stop_on_first_crash=False, verbose=0, skip_bids_validation=True, voxel=voxel, device=Device.auto,
        model="tumsyn-small", weights=None, skull_strip=SkullStrip.auto, output_spaces=None, mask_output=False,
        inference_mode=InferenceMode.fast, clean_workdir=False, resource_monitor=False, notrack=False,
    )
    settings = build_settings(raw)
    try:
        check_description(settings.bids_dir)
    except BidsValidationError as exc:
        typer.echo(f"tumsyn prompts: warning: {exc}", err=True)
    return build_plan(settings, use_database=False)

