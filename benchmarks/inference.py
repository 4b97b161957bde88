#!/usr/bin/env python
"""Inference speed and memory: the published demo's naive loop versus the engine, in one run.

(a) naive: the published demo's strategy: 60^3-style windows of the model at stride W/2, batch 1,
    float32, every query of a window decoded in one call, uniform averaging (with this project's
    geometry, padding and coverage so that both produce the same output grid);
(b) engine: ``synthesize(..., mode=...)`` (fast settings by default).

Each part runs in its own process so that peak RSS and peak CUDA memory are its own. Prints
windows/s, seconds per volume, peak RSS, peak CUDA memory, and max/mean absolute difference and
PSNR of (b) against (a). The official-size model runs on GPU when one is present, tumsyn-small
otherwise (random weights unless the bundled trained tumsyn-small weights exist).

    python benchmarks/inference.py --shape 180x220x180               # whole brain, 1 mm
    python benchmarks/inference.py --shape 96x96x96 --scale 2        # 2x super-resolution
    python benchmarks/inference.py --model tumsyn-official --device cuda --skip-naive
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPT = ("Age: 40; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (1.0, 1.0, 1.0); "
          "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)")
SOURCE_PROMPT = ("Age: 40; Gender: F; Scanner: 3.0 Siemens; Modality: T1w; Voxel size: (1.0, 1.0, 1.0); "
                 "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (2300.0, 2.3, 900.0, 9.0)")


def phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A brain-like test volume: smooth texture inside an ellipsoid, zero background."""
    from scipy.ndimage import gaussian_filter, zoom

    rng = np.random.default_rng(seed)
    coarse = gaussian_filter(rng.random(tuple(max(4, n // 4) for n in shape)), 1.0)
    texture = zoom(coarse, [n / c for n, c in zip(shape, coarse.shape, strict=False)], order=1)[
        : shape[0], : shape[1], : shape[2]]
    grids = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = sum(g**2 for g in grids) < 0.8
    return (1000.0 * texture * inside).astype(np.float32)


def load_bundle(model: str | None, weights: str | None, device: str):
    """The model to benchmark: named, or official on CUDA / tumsyn-small on CPU."""
    import torch

    from tumsyn_bids.models.loading import bundled_weights_path, load_model, make_random_bundle

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    name = model or ("tumsyn-official" if cuda else "tumsyn-small")
    if weights or (name == "tumsyn-small" and bundled_weights_path(name).is_file()):
        return load_model(name, weights=weights, device="cpu"), "trained"
    return make_random_bundle(name, seed=0), "random"


def naive(image, affine, prompt, bundle, voxel_size, device):
    """The published demo's loop (batch 1, float32, all queries at once, uniform averaging)."""
    import torch

    from tumsyn_bids.inference.engine import model_window
    from tumsyn_bids.inference.geometry import output_grid
    from tumsyn_bids.inference.normalize import normalize_intensity
    from tumsyn_bids.inference.tiling import plan_windows

    grid = output_grid(image.shape, affine, voxel_size)
    order = (2, 1, 0) if bundle.axis_order == "zyx" else (0, 1, 2)
    vol = np.ascontiguousarray(np.transpose(normalize_intensity(image), order))
    net_grid = grid.permuted(order)
    w = model_window(bundle)
    plan = plan_windows(vol.shape, net_grid.out_shape, w, w // 2, spread=False)
    bundle.to(device)
    net = bundle.net.to(memory_format=torch.contiguous_format).eval()
    padded = torch.from_numpy(np.pad(vol, plan.pad))
    out = torch.zeros(plan.out_shape)
    count = torch.zeros(plan.out_shape)
    with torch.no_grad():
        text = bundle.encode_prompt(prompt).to(device)
        for win in plan.windows:
            a = win.start
            x = padded[a[0] : a[0] + w, a[1] : a[1] + w, a[2] : a[2] + w][None, None].to(device)
            axes = [torch.as_tensor(ax.coords, dtype=torch.float32) for ax in win.axes]
            coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(1, -1, 3).to(device)
            pred = net(x, text, coords).reshape(win.out_shape).cpu()
            out[win.out_slices] += pred
            count[win.out_slices] += 1
    return np.transpose((out / count).numpy(), np.argsort(order)), len(plan.windows)


def run_part(args) -> None:
    """Child process: run one part, save the output, print one JSON line."""
    import torch

    from tumsyn_bids.inference.device import resolve_device
    from tumsyn_bids.inference.engine import synthesize

    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    bundle, kind = load_bundle(args.model, args.weights, args.device)
    shape = tuple(int(v) for v in args.shape.lower().split("x"))
    image, affine = phantom(shape), np.diag([1.0, 1.0, 1.0, 1.0])
    voxel = None if args.scale == 1 else 1.0 / args.scale
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    if args.part == "naive":
        data, windows = naive(image, affine, PROMPT, bundle, voxel, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        extra = {}
    else:
        kw = dict(voxel_size=voxel, device=dev, mode=args.mode, batch_size=args.batch_size, amp=not args.no_amp,
                  progress=False, query_chunk=args.query_chunk)
        info = {}
        if args.refine:  # what the app runs by default: one all-maps pass + inference.refine
            from tumsyn_bids.inference.refine import synthesize_refined

            res, _, info = synthesize_refined(image, affine, image > 0, PROMPT, bundle, source_prompt=SOURCE_PROMPT,
                                              **kw)
        else:
            res = synthesize(image, affine, PROMPT, bundle, **kw)
        data, windows = res.data, res.windows
        extra = {"dtype": res.dtype, "batch": res.batch_size, "query_chunk": res.query_chunk,
                 "encode_s": round(res.timings["encode"], 2), "decode_s": round(res.timings["decode"], 2),
                 "refine_s": info.get("seconds")}
    seconds = time.perf_counter() - t0
    np.save(args.save, data.astype(np.float32))
    params = sum(p.numel() for p in bundle.net.parameters())
    print(json.dumps({
        "part": args.part, "model": bundle.name, "weights": kind, "params": params, "device": str(dev),
        "shape_in": list(shape), "shape_out": list(data.shape), "windows": windows,
        "seconds": round(seconds, 2), "windows_per_s": round(windows / seconds, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "peak_cuda_gb": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None,
        "threads": args.threads, **extra,
    }))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="180x220x180", help="input volume size at 1 mm (default 180x220x180)")
    parser.add_argument("--scale", type=float, default=1.0, help="super-resolution factor (2: 0.5 mm output)")
    parser.add_argument("--mode", choices=("fast", "faithful"), default="fast", help="engine mode for part (b)")
    parser.add_argument("--model", default=None, help="tumsyn-small or tumsyn-official (default: by device)")
    parser.add_argument("--weights", default=None, help="weights file(s) instead of random/bundled weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--query-chunk", type=int, default=None)
    parser.add_argument("--no-amp", action="store_true", help="engine in float32")
    parser.add_argument("--skip-naive", action="store_true", help="run only the engine")
    parser.add_argument("--refine", action="store_true",
                        help="engine part as the app runs it: all maps in one pass + the physics refinement")
    parser.add_argument("--part", choices=("naive", "engine"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        run_part(args)
        return 0

    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        parts = ["engine"] if args.skip_naive else ["naive", "engine"]
        for part in parts:
            save = str(Path(tmp) / f"{part}.npy")
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                   "--part", part, "--save", save]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            results[part] = json.loads(proc.stdout.strip().splitlines()[-1])
            outputs[part] = np.load(save)
    for part, r in results.items():
        label = "(a) naive loop" if part == "naive" else f"(b) engine {args.mode}"
        print(f"{label:22s} {json.dumps(r)}")
    if "naive" in outputs:
        a, b = outputs["naive"].astype(np.float64), outputs["engine"].astype(np.float64)
        diff = np.abs(a - b)
        rng = float(a.max() - a.min()) or 1.0
        mse = float(np.mean((a - b) ** 2))
        psnr = float("inf") if mse == 0 else 10 * np.log10(rng**2 / mse)
        speedup = results["naive"]["seconds"] / results["engine"]["seconds"]
        print(f"speed-up {speedup:.2f}x   max|a-b| {diff.max():.4g}   mean|a-b| {diff.mean():.4g}   "
              f"PSNR(b vs a, range {rng:.3g}) {psnr:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
