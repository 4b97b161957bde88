"""Training plumbing shared by both stages: seeding, checkpoint resume, loss log, progress, LR schedule.

Checkpoints are written with :func:`tumsyn_bids.models.checkpoint.atomic_torch_save`; the schedule
is :func:`tumsyn_bids.training.schedule.cosine_lr`.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from tumsyn_bids.atomic import atomic_write_text
from tumsyn_bids.training.schedule import cosine_lr


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return the numpy generator the data pipeline uses."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def resume_state(ckpt_path: Path, module: torch.nn.Module, module_key: str, opt: torch.optim.Optimizer,
                 rng: np.random.Generator, log: "LossLog") -> tuple[int, float]:
    """Restore module, optimizer, RNG and loss log from ``ckpt_path``; return (step, elapsed seconds)."""
    state = load_checkpoint(ckpt_path)
    module.load_state_dict(state[module_key])
    opt.load_state_dict(state["optimizer"])
    restore_rng(rng, state["rng"])
    start = int(state["step"])
    log.truncate_after(start)
    return start, float(state["elapsed"])


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Random states of numpy (the pipeline generator) and torch, checkpoint-safe."""
    return {"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state()}


def restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = json.loads(state["numpy"])
    torch.set_rng_state(state["torch"])


def stage_lr(step: int, total: int, base: float, warmup_frac: float) -> float:
    """The stages' learning rate: :func:`~tumsyn_bids.training.schedule.cosine_lr` warming up over
    ``warmup_frac`` of the run (at least one step) and decaying to 10% of ``base``."""
    return cosine_lr(step, base=base, min_lr=0.1 * base, warmup=max(1, int(total * warmup_frac)), total=total)


class LossLog:
    """Append-only JSON-lines loss log (one object per step), flushed every line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record: Any) -> None:
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (after a resume from an older checkpoint)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


@contextmanager
def progress_bar(description: str, total: int, start: int, enabled: bool) -> Iterator[Any]:
    """A rich progress bar (a no-op object when disabled); yields ``update(step, **fields)``."""
    if not enabled:
        yield lambda step, **fields: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False) as bar:
        task = bar.add_task(description, total=total, completed=start, info="")

        def update(step: int, **fields: Any) -> None:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            bar.update(task, completed=step, info=info)

        yield update


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CPU, fp16 on CUDA, or a null context."""
    if not enabled:
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
