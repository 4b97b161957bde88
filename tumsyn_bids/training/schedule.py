"""The learning-rate schedule of every training loop: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


def cosine_lr(step: int, *, base: float, min_lr: float, warmup: int, total: int) -> float:
    """Learning rate at ``step`` (0-based) of a ``total``-step run.

    Linear warm-up over the first ``warmup`` steps (``base * (step + 1) / warmup``), then a cosine
    from ``base`` down to ``min_lr``, reached at ``total`` and held after it.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (base - min_lr) * (1.0 + math.cos(math.pi * progress))
