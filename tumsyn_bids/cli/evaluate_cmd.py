"""``tumsyn evaluate SYNTH REAL [--mask M] [--register] [--json]``: PSNR / SSIM / MAE of a synthesis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from tumsyn_bids.errors import TumsynError


def evaluate(
    synth: Annotated[Path, typer.Argument(help="Synthesized image (NIfTI); its grid is the reference.")],
    real: Annotated[Path, typer.Argument(help="Real acquisition of the same contrast (NIfTI).")],
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Brain mask on the SYNTH grid.")] = None,
    register: Annotated[bool, typer.Option(
        "--register", help="Rigidly register REAL to SYNTH first (antspyx).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fidelity of a synthesized image: PSNR, SSIM, MAE on percentile-normalised [0,1] intensities."""
    from tumsyn_bids.evaluation import evaluate_files

    try:
        result = evaluate_files(synth, real, mask, register)
    except TumsynError as exc:
        typer.echo(f"tumsyn: error: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code)) from None
    if as_json:
        typer.echo(json.dumps(_finite(result), indent=2, allow_nan=False))
        return
    typer.echo(f"{'region':<8} {'PSNR (dB)':>10} {'SSIM':>8} {'MAE':>8}")
    for region in ("whole", "masked"):
        if region in result:
            r = result[region]
            typer.echo(f"{region:<8} {r['psnr']:>10.2f} {r['ssim']:>8.4f} {r['mae']:>8.4f}")


def _finite(value):
    """JSON has no inf/NaN: write ``"inf"`` (identical images) and null (empty region)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value
