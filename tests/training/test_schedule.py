"""One learning-rate schedule for every training loop (training/schedule.py)."""

from __future__ import annotations

import math

import pytest

from tumsyn_bids.training.loop import stage_lr
from tumsyn_bids.training.schedule import cosine_lr


def test_warmup_then_cosine_to_the_floor():
    lrs = [cosine_lr(s, base=1e-3, min_lr=1e-5, warmup=10, total=110) for s in range(130)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up, base at its end
    assert lrs[10] == pytest.approx(1e-3)  # the cosine starts at base
    assert lrs[60] == pytest.approx((1e-3 + 1e-5) / 2)  # half-way down
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # never rises after the warm-up
    assert lrs[110] == pytest.approx(1e-5) and lrs[129] == pytest.approx(1e-5)  # held at the floor


def test_no_warmup_starts_at_base():
    assert cosine_lr(0, base=2e-4, min_lr=0.0, warmup=0, total=100) == pytest.approx(2e-4)


def test_the_stages_schedule_is_the_old_lccd_one():
    """stage_lr is cosine_lr with the stages' parameters: the values the lccd loop always used."""
    def old(step, total, base, warmup_frac):  # the lccd loop's own copy before issue 17
        warm = max(1, int(total * warmup_frac))
        if step < warm:
            return base * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return base * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    for total, frac in ((100, 0.05), (7, 0.0), (1000, 0.1)):
        for step in range(0, total + 5, max(1, total // 25)):
            assert stage_lr(step, total, 3e-4, frac) == pytest.approx(old(step, total, 3e-4, frac))
