"""``tumsyn train``: the shipped physics-structured ``tumsyn-small`` on simulated label-map patches
(default), or the published two-stage TUMSyn recipe (contrastive text encoder, then synthesis) for
the ``lccd`` architecture, on paired BIDS data or simulated subjects (``--model lccd-small``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tumsyn_bids.errors import TumsynError


def train(
    bids_dir: Annotated[Optional[Path], typer.Argument(
        help="BIDS dataset with paired contrasts (omit to train on simulated data).")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="Training config (.yaml/.yml/.toml).")] = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder: checkpoints, loss logs, model.pt, training.json.")] = Path("tumsyn_train"),
    stage: Annotated[str, typer.Option("--stage", help="Which stages to run: 1, 2 or all.")] = "all",
    steps: Annotated[Optional[int], typer.Option(
        "--steps", min=0, help="Total stage-2 steps (overrides the config).")] = None,
    stage1_steps: Annotated[Optional[int], typer.Option("--stage1-steps", min=0, help="Total stage-1 steps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoints in --out.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="tumsyn-small (physics-structured, default without BIDS_DIR) or lccd-small (two-stage "
                        "TUMSyn recipe, default with BIDS_DIR).")] = None,
    patch_size: Annotated[int, typer.Option(
        "--patch-size", min=8, help="tumsyn-small: training patch edge (voxels, multiple of 8).")] = 48,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="tumsyn-small: patches per step.")] = 2,
    participant_label: Annotated[Optional[list[str]], typer.Option(
        "--participant-label", help="Subjects to use.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for torch.")] = None,
    labelmaps: Annotated[Optional[list[Path]], typer.Option(
        "--labelmaps", help="Label maps (files or folders) for simulated training.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    init: Annotated[Optional[str], typer.Option(
        "--init", help="tumsyn-small: continue a trained model instead of random weights: 'bundled' (the shipped "
                       "weights) or a weights file; the record stays cumulative.")] = None,
    time_budget: Annotated[float, typer.Option(
        "--time-budget", min=0, help="tumsyn-small: seconds of training; the schedule is fitted to them.")] = 0.0,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="tumsyn-small: simulation processes (0: in the training process).")] = 0,
    device: Annotated[str, typer.Option("--device", help="tumsyn-small: auto, cpu or cuda.")] = "auto",
    lr: Annotated[Optional[float], typer.Option("--lr", min=0, help="tumsyn-small: peak learning rate.")] = None,
) -> None:
    """Train tumsyn (text encoder, then synthesis net) from a config and/or a BIDS dataset."""
    from tumsyn_bids.training.config import load_config, override

    try:
        cfg = load_config(config)
        default = cfg.model if config is not None else "lccd-small" if bids_dir is not None else "tumsyn-small"
        if (model or default) == "tumsyn-small":
            record = _train_physics(labelmaps, out, steps, resume, seed, threads, patch_size, batch_size,
                                    init=init, time_budget=time_budget, workers=workers, device=device, lr=lr)
            typer.echo(f"model: {record['model_file']} (sha256 {record['sha256'][:12]})")
            return
        stages = {"1": (1,), "2": (2,), "all": (1, 2)}.get(stage)
        if stages is None:
            raise _usage(f"--stage must be 1, 2 or all, not {stage!r}")
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


def _train_physics(labelmaps, out: Path, steps, resume: bool, seed, threads, patch_size: int, batch_size: int, *,
                   init: str | None = None, time_budget: float = 0.0, workers: int = 0, device: str = "auto",
                   lr: float | None = None) -> dict:
    """Train (or resume) the physics-structured model in ``out`` and export ``out/model.pt``."""
    from tumsyn_bids.training.physics_data import SimConfig
    from tumsyn_bids.training.physics_train import PhysicsTrainConfig, export, resumed_config, train

    if not labelmaps:
        raise _usage("tumsyn-small trains on label maps: give --labelmaps FILE_OR_FOLDER")
    if patch_size % 8:
        raise _usage(f"--patch-size {patch_size}: must be a multiple of 8")
    if init and init != "bundled" and not Path(init).is_file():
        raise _usage(f"--init {init}: not 'bundled' and not a weights file")
    cfg = (resumed_config(out, labelmaps=[str(p) for p in labelmaps], steps=steps or None, time_budget=time_budget,
                          workers=workers or None, device=device, threads=threads, lr=lr)
           if resume else None)
    if cfg is None:
        if (out / "state.pt").is_file():
            raise _usage(f"{out} holds a training run: pass --resume to continue it or choose another --out")
        cfg = PhysicsTrainConfig(labelmaps=[str(p) for p in labelmaps], steps=steps or 4000, seed=seed or 0,
                                 threads=threads or 2, batch_size=batch_size, sim=SimConfig(size=patch_size),
                                 init=init or "", time_budget=time_budget, workers=workers, device=device,
                                 **({"lr": lr} if lr else {}))
    train(cfg, out, resume=resume, report=lambda m: typer.echo(m))
    return export(out)


def _usage(message: str) -> TumsynError:
    from tumsyn_bids.errors import UsageError

    return UsageError(message)
