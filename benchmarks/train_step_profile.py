"""Where the physics trainer's step time goes, per layout and precision (run this first on a lent GPU).

The first H200 run spent 0.34 s of GPU time per step (batch 8, 80^3) for a 1 M-parameter
U-Net, which should take a fraction of that. This prints the time of each part of one step
(upload, encode, dense maps, map + render losses, backward, optimiser) for channels-last on/off
and bf16 autocast on/off, on synthetic batches from the real simulator, so the next GPU session
can pick the fastest setting in a minute instead of guessing.

    python benchmarks/train_step_profile.py --labelmaps DIR [--size 80] [--batch 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_step(net, batch, cfg, device, *, channels_last: bool, amp: bool, repeats: int) -> dict[str, float]:
    """Median seconds of each part of a training step over ``repeats`` runs (after one warm-up)."""
    from tumsyn_bids.models.physics_net import subject_condition, with_source
    from tumsyn_bids.training.physics_train import losses

    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {}

    def tick(name: str, t0: float) -> float:
        _sync(device)
        now = time.perf_counter()
        times.setdefault(name, []).append(now - t0)
        return now

    for i in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        x = batch["x"].to(device).contiguous(memory_format=fmt)
        t = tick("upload", t)
        cond = subject_condition(batch["field"].to(device), batch["age"].to(device), batch["sex"].to(device))
        cond = torch.cat([with_source(cond[b:b + 1], p, c) for b, (p, c) in
                          enumerate(zip(batch["src_protocol"], batch["src_contrast"], strict=False))])
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            feat = net.encode(x, cond)
            t = tick("encode (no grad)", t)
            net.dense_maps(feat)
            t = tick("dense maps (no grad)", t)
        terms = losses(net, batch, dataclasses.replace(cfg, amp=amp), rng, device, amp)
        loss = sum(terms.values())
        t = tick("forward + all losses", t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t = tick("backward", t)
        opt.step()
        tick("optimiser", t)
        if i == 0:
            times.clear()  # warm-up (cuDNN autotuning, allocator)
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    from tumsyn_bids.inference.device import resolve_device
    from tumsyn_bids.models.physics_net import PhysicsSynthNet
    from tumsyn_bids.training.physics_data import SimConfig, load_label_volume, make_batch
    from tumsyn_bids.training.physics_train import PhysicsTrainConfig, labelmap_files

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelmaps", required=True, help="folder of label maps")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = PhysicsTrainConfig(labelmaps=[args.labelmaps], sim=SimConfig(size=args.size))
    files, _ = labelmap_files(cfg.labelmaps, cfg.held_out)
    volumes = [load_label_volume(files[0])]
    t0 = time.perf_counter()
    batch = make_batch(volumes, cfg.sim, args.batch, np.random.default_rng(0), torch.Generator().manual_seed(0))
    print(f"simulate one batch of {args.batch} x {args.size}^3 on the CPU (one process): "
          f"{time.perf_counter() - t0:.2f} s")
    torch.manual_seed(0)
    net = PhysicsSynthNet(**cfg.model_args).to(device)
    rows = []
    for channels_last in (True, False):
        for amp in ((False, True) if device.type == "cuda" else (False,)):
            parts = profile_step(net, batch, cfg, device, channels_last=channels_last, amp=amp, repeats=args.repeats)
            step = sum(v for k, v in parts.items() if "no grad" not in k)
            rows.append((channels_last, amp, step, parts))
    print(f"device {device}; median seconds over {args.repeats} steps")
    for channels_last, amp, step, parts in rows:
        detail = ", ".join(f"{k} {v:.3f}" for k, v in parts.items())
        print(f"channels_last={channels_last!s:5} amp={amp!s:5} step {step:.3f} s  ({detail})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
