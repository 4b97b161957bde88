"""``tumsyn train``: stage 1 (contrastive text encoder) and stage 2 (synthesis) training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tumsyn_bids.errors import TumsynError


def train(
    bids_dir: Annotated[Optional[Path], typer.Argument(help="BIDS dataset with paired contrasts (omit to train on simulated data).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Training config (.yaml/.yml/.toml).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: checkpoints, loss logs, model.pt, training.json.")] = Path("tumsyn_train"),
    stage: Annotated[str, typer.Option("--stage", help="Which stages to run: 1, 2 or all.")] = "all",
    steps: Annotated[Optional[int], typer.Option("--steps", min=0, help="Total stage-2 steps (overrides the config).")] = None,
    stage1_steps: Annotated[Optional[int], typer.Option("--stage1-steps", min=0, help="Total stage-1 steps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoints in --out.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Architecture to train (tumsyn-small).")] = None,
    participant_label: Annotated[Optional[list[str]], typer.Option("--participant-label", help="Subjects to use.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for torch.")] = None,
    labelmaps: Annotated[Optional[list[Path]], typer.Option("--labelmaps", help="Label maps (files or folders) for simulated training.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train tumsyn (text encoder, then synthesis net) from a config and/or a BIDS dataset."""
    from tumsyn_bids.training.config import load_config, override

    try:
        stages = {"1": (1,), "2": (2,), "all": (1, 2)}.get(stage)
        if stages is None:
            raise _usage(f"--stage must be 1, 2 or all, not {stage!r}")
        cfg = load_config(config)
        cfg = override(cfg, None, seed=seed, model=model, threads=threads)
        cfg = override(cfg, "stage2", steps=steps)
        cfg = override(cfg, "stage1", steps=stage1_steps)
        if bids_dir is not None:
            cfg = override(cfg, "data", source="bids", bids_dir=str(bids_dir), participant_label=participant_label)
        if labelmaps:
            cfg = override(cfg, "data", labelmaps=[str(p) for p in labelmaps])
        from tumsyn_bids.training.run import run_training

        record = run_training(cfg, out, stages=stages, resume=resume, progress=progress)
    except TumsynError as exc:
        typer.echo(f"tumsyn: error: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code)) from None
    typer.echo(f"model: {record['model_file']} (sha256 {record['sha256'][:12]})")


def _usage(message: str) -> TumsynError:
    from tumsyn_bids.errors import UsageError

    return UsageError(message)
