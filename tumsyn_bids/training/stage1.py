"""Stage 1: contrastive text-image pre-training of the text encoder (symmetric InfoNCE).

A small 3D CNN image tower (used only here) maps a downscaled brain crop to the text feature
size; both features are L2-normalised and compared with a learnable temperature initialised to
ln(1/0.07) and clamped at ln(100). Zero-shot retrieval (image -> one of the seven modality
prompts) measures whether the prompt embedding separates contrasts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tumsyn_bids.contrasts import CONTRASTS
from tumsyn_bids.models.checkpoint import atomic_torch_save
from tumsyn_bids.prompts import parse_prompt
from tumsyn_bids.protocols import default_protocol
from tumsyn_bids.training.config import TrainConfig
from tumsyn_bids.training.loop import LossLog, autocast, progress_bar, resume_state, rng_state, stage_lr
from tumsyn_bids.training.pool import PoolSubject

LOGIT_INIT = math.log(1 / 0.07)
LOGIT_MAX = math.log(100.0)


class ImageTower(nn.Module):
    """Four stride-2 conv blocks, global average pooling, linear projection to ``embed_dim``."""

    def __init__(self, embed_dim: int, width: int = 16):
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        blocks: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            blocks += [nn.Conv3d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(4, cout), nn.GELU()]
        self.body = nn.Sequential(*blocks)
        self.proj = nn.Linear(chans[-1], embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x).mean(dim=(2, 3, 4)))


class ClipPair(nn.Module):
    """Text encoder + image tower + learnable logit scale."""

    def __init__(self, text_encoder: nn.Module, embed_dim: int):
        super().__init__()
        self.text = text_encoder
        self.image = ImageTower(embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_INIT))

    def logits(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        img = F.normalize(self.image(images).float(), dim=-1)
        txt = F.normalize(self.text(tokens).float(), dim=-1)
        return self.logit_scale.clamp(max=LOGIT_MAX).exp() * img @ txt.t()


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy over image->text and text->image logits (matches on the diagonal)."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def image_view(data: np.ndarray, downscale: int, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """Average-pool by ``downscale`` then crop/pad to ``size``^3 (random crop with ``rng``, else centred)."""
    small = np.asarray(data, dtype=np.float32)
    if downscale > 1:
        t = torch.from_numpy(np.ascontiguousarray(small))[None, None]
        small = F.avg_pool3d(t, downscale, ceil_mode=True)[0, 0].numpy()
    if size <= 0:
        return small
    out = np.zeros((size, size, size), np.float32)
    src, dst = [], []
    for n in small.shape:
        if n >= size:
            start = int(rng.integers(n - size + 1)) if rng is not None else (n - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            off = (size - n) // 2
            src.append(slice(0, n))
            dst.append(slice(off, off + n))
    out[tuple(dst)] = small[tuple(src)]
    return out


_SMALL: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _small(data: np.ndarray, downscale: int) -> np.ndarray:
    """Average-pooled copy of a pool image, cached while the image lives (pooling is the costly part)."""
    key = id(data)
    hit = _SMALL.get(key)
    if hit is not None and hit[0] is data:
        return hit[1]
    if len(_SMALL) > 64:
        _SMALL.clear()
    small = image_view(data, downscale, 0, None) if downscale > 1 else data
    _SMALL[key] = (data, small)
    return small


def _batch(subjects: list[PoolSubject], cfg: TrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    images, prompts = [], []
    seen: set[str] = set()
    attempts = 0
    while len(images) < cfg.stage1.batch_size and attempts < 20 * cfg.stage1.batch_size:
        attempts += 1
        subject = subjects[int(rng.integers(len(subjects)))]
        image = subject.images[int(rng.integers(len(subject.images)))]
        if image.prompt in seen:  # identical prompts would be false negatives
            continue
        seen.add(image.prompt)
        images.append(image_view(_small(image.data, cfg.stage1.downscale), 1, cfg.stage1.image_size, rng))
        prompts.append(image.prompt)
    return np.stack(images)[:, None], prompts


def train_stage1(cfg: TrainConfig, pool: Any, text_encoder: nn.Module, out_dir: Path, *,
                 rng: np.random.Generator, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the text encoder contrastively; returns a summary and writes ``stage1.pt`` + ``stage1_loss.jsonl``."""
    from tumsyn_bids.models.tokenizer import tokenize

    device = torch.device(cfg.device)
    embed_dim = _text_dim(text_encoder)
    model = ClipPair(text_encoder, embed_dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.stage1.lr, weight_decay=cfg.stage1.weight_decay)
    ckpt_path, log = Path(out_dir) / "stage1.pt", LossLog(Path(out_dir) / "stage1_loss.jsonl")
    start, elapsed = 0, 0.0
    if resume and ckpt_path.exists():
        start, elapsed = resume_state(ckpt_path, model, "model", opt, rng, log)
    total = cfg.stage1.steps
    model.train()
    loss_value, t0 = float("nan"), time.time()

    def save(step: int) -> None:
        atomic_torch_save({"stage": 1, "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                           "rng": rng_state(rng), "elapsed": elapsed + time.time() - t0,
                           "config": cfg.to_dict()}, ckpt_path)

    with progress_bar("stage 1 (contrastive)", total, start, progress) as update:
        for step in range(start, total):
            pool_subjects = [pool.draw() for _ in range(4)]
            images, prompts = _batch(pool_subjects, cfg, rng)
            lr = stage_lr(step, total, cfg.stage1.lr, cfg.stage1.warmup_frac)
            for group in opt.param_groups:
                group["lr"] = lr
            x = torch.from_numpy(images).to(device)
            tokens = tokenize(prompts).to(device)
            with autocast(device, cfg.amp):
                logits = model.logits(x, tokens)
            loss = info_nce(logits.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_value = float(loss.detach())
            acc = float((logits.argmax(1) == torch.arange(len(prompts), device=device)).float().mean())
            log.write(step=step + 1, loss=loss_value, acc=acc, lr=lr, scale=float(model.logit_scale.detach().exp()))
            update(step + 1, loss=loss_value, acc=acc)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
                save(step + 1)
    if start >= total and not ckpt_path.exists():
        save(total)
    return {"steps": total, "final_loss": loss_value, "seconds": elapsed + time.time() - t0,
            "text_state": {k: v.detach().cpu() for k, v in model.text.state_dict().items()},
            "image_tower": model.image}


def _text_dim(text_encoder: nn.Module) -> int:
    from tumsyn_bids.models.tokenizer import tokenize

    with torch.no_grad():
        return int(text_encoder(tokenize(["Modality: T1w"])).shape[-1])


def retrieval_prompts(prompt_text: str) -> tuple[list[str], list[str]]:
    """The seven modality prompts (default protocol at the image's field strength) for zero-shot retrieval."""
    base = parse_prompt(prompt_text)
    names, texts = [], []
    for name, contrast in CONTRASTS.items():
        proto = default_protocol(name, base.field_strength)
        texts.append(base.with_(modality=contrast.prompt_modality, tr_ms=proto.tr_ms, te_ms=proto.te_ms,
                                ti_ms=proto.ti_ms, flip_angle=proto.flip_angle).text())
        names.append(name)
    return names, texts


@torch.no_grad()
def zero_shot_accuracy(text_encoder: nn.Module, image_tower: nn.Module, subjects: list[PoolSubject],
                       cfg: TrainConfig) -> dict[str, Any]:
    """Fraction of held-out images whose best-matching modality prompt is their own contrast."""
    from tumsyn_bids.models.tokenizer import tokenize

    text_encoder.eval()
    image_tower.eval()
    correct, total = 0, 0
    per: dict[str, list[int]] = {}
    for subject in subjects:
        for image in subject.images:
            names, texts = retrieval_prompts(image.prompt)
            txt = F.normalize(text_encoder(tokenize(texts)).float(), dim=-1)
            view = image_view(image.data, cfg.stage1.downscale, cfg.stage1.image_size, None)
            img = F.normalize(image_tower(torch.from_numpy(view)[None, None]).float(), dim=-1)
            guess = names[int((img @ txt.t()).argmax())]
            hit = int(guess == image.contrast)
            correct += hit
            total += 1
            per.setdefault(image.contrast, []).append(hit)
    return {"accuracy": correct / max(total, 1), "n": total,
            "per_contrast": {k: sum(v) / len(v) for k, v in per.items()}}
