"""Stage 2: synthesis training with the frozen text encoder (published recipe, CPU-sized).

Each step: per sample a subject and two of its contrasts; the same random HR cube of both; LR
inputs at one random scale (isotropic 1-3 or one thick-slice axis) shared by the batch; queries on
the HR grid; L1 in both directions (LR source + target prompt -> HR target, and back). bf16
autocast on CPU, gradient clipping, AdamW with warm-up + cosine, checkpoint/resume, JSON-lines log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tumsyn_bids.models.checkpoint import atomic_torch_save
from tumsyn_bids.training.config import TrainConfig
from tumsyn_bids.training.loop import LossLog, autocast, progress_bar, resume_state, rng_state, stage_lr
from tumsyn_bids.training.sampling import PairSample, draw_scale, make_pair_sample


class PromptCache:
    """Frozen text features per prompt string (computed once, float32)."""

    def __init__(self, text_encoder: nn.Module, device: torch.device):
        self.encoder = text_encoder.eval().requires_grad_(False)
        self.device = device
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        from tumsyn_bids.models.tokenizer import tokenize

        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            feats = self.encoder(tokenize(missing).to(self.device)).float()
            self._cache.update(zip(missing, feats, strict=True))
        return torch.stack([self._cache[p] for p in prompts])


def orient(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random axis permutation and flips applied to every array (views, no copies)."""
    perm = tuple(int(a) for a in rng.permutation(3))
    flips = tuple(slice(None, None, -1) if f else slice(None) for f in rng.random(3) < 0.5)
    return [np.transpose(a, perm)[flips] for a in arrays]


def draw_batch(pool: Any, cfg: TrainConfig, rng: np.random.Generator) -> list[PairSample]:
    """``batch_size`` pair samples at one shared scale."""
    s2 = cfg.stage2
    scale = draw_scale(rng, s2.scale_min, s2.scale_max, s2.thick_slice_prob, s2.thick_max)
    samples = []
    for _ in range(s2.batch_size):
        subject = pool.draw()
        i, j = rng.choice(len(subject.images), size=2, replace=len(subject.images) < 2)
        src, tgt = subject.images[int(i)], subject.images[int(j)]
        views = orient([src.data, tgt.data, subject.mask], rng) if s2.augment_orientation else \
            [src.data, tgt.data, subject.mask]
        samples.append(make_pair_sample(views[0], views[1], src.prompt, tgt.prompt, views[2],
                                        s2.lr_size, scale, s2.queries, rng))
    return samples


def batch_tensors(samples: list[PairSample], prompts: PromptCache, both: bool, device: torch.device):
    """Inputs, text features, coordinates and targets; the reverse direction appended when ``both``."""
    lr_src = torch.from_numpy(np.stack([s.lr_src for s in samples]))[:, None]
    lr_tgt = torch.from_numpy(np.stack([s.lr_tgt for s in samples]))[:, None]
    coords = torch.from_numpy(np.stack([s.coords for s in samples]))
    y_tgt = torch.from_numpy(np.stack([s.hr_tgt for s in samples]))
    y_src = torch.from_numpy(np.stack([s.hr_src for s in samples]))
    t_tgt = prompts([s.prompt_tgt for s in samples])
    t_src = prompts([s.prompt_src for s in samples])
    if both:
        x, t = torch.cat([lr_src, lr_tgt]), torch.cat([t_tgt, t_src])
        c, y = torch.cat([coords, coords]), torch.cat([y_tgt, y_src])
    else:
        x, t, c, y = lr_src, t_tgt, coords, y_tgt
    return x.to(device), t.to(device), c.to(device), y.to(device)


def train_stage2(cfg: TrainConfig, pool: Any, net: nn.Module, text_encoder: nn.Module, out_dir: Path, *,
                 rng: np.random.Generator, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``net`` in place; writes ``stage2.pt`` (resumable) and ``stage2_loss.jsonl``."""
    device = torch.device(cfg.device)
    net.to(device)
    prompts = PromptCache(text_encoder.to(device), device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.stage2.lr, weight_decay=cfg.stage2.weight_decay)
    ckpt_path, log = Path(out_dir) / "stage2.pt", LossLog(Path(out_dir) / "stage2_loss.jsonl")
    start, elapsed = 0, 0.0
    if resume and ckpt_path.exists():
        start, elapsed = resume_state(ckpt_path, net, "net", opt, rng, log)
    total = cfg.stage2.steps
    net.train()
    t0 = time.time()
    recent: list[float] = []

    def save(step: int) -> None:
        atomic_torch_save({"stage": 2, "step": step, "net": net.state_dict(), "optimizer": opt.state_dict(),
                           "rng": rng_state(rng), "elapsed": elapsed + time.time() - t0,
                           "config": cfg.to_dict()}, ckpt_path)

    with progress_bar("stage 2 (synthesis)", total, start, progress) as update:
        for step in range(start, total):
            tic = time.time()
            samples = draw_batch(pool, cfg, rng)
            x, t, c, y = batch_tensors(samples, prompts, cfg.stage2.both_directions, device)
            data_s = time.time() - tic
            lr = stage_lr(step, total, cfg.stage2.lr, cfg.stage2.warmup_frac)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(device, cfg.amp):
                pred = net(x, t, c)
            loss = torch.nn.functional.l1_loss(pred.float().squeeze(-1), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            value = float(loss.detach())
            recent = (recent + [value])[-50:]
            log.write(step=step + 1, loss=value, lr=lr, scale=list(samples[0].scale),
                      data_s=round(data_s, 3), step_s=round(time.time() - tic, 3))
            update(step + 1, loss=value, avg50=float(np.mean(recent)))
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
                save(step + 1)
    if start >= total and not ckpt_path.exists():
        save(total)
    net.eval()
    return {"steps": total, "final_loss_avg50": float(np.mean(recent)) if recent else None,
            "seconds": elapsed + time.time() - t0}
