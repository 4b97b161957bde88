#!/usr/bin/env python
"""GPU suite: the published-size network measured in one command (CUDA when present).

What it runs, in one process, on a brain-like volume (default 180x220x180 at 1 mm):

1. ``tumsyn-official`` with random weights written on the fly in the two published checkpoint
   layouts and loaded through ``load_model`` (strict, as real published weights would be; nothing
   is downloaded), at scale 1 and at ``--sr``x super-resolution (default 2), each in
   ``fast`` (bf16 autocast on CUDA) and ``faithful`` (fp32, the published tiling and index
   arithmetic) mode: seconds, windows/s, TFLOP/s achieved overall and in the encoder (+ fusion),
   % of the card's dense bf16 peak, peak CUDA memory, and PSNR / max|diff| of fast against faithful.
2. The shipped ``tumsyn-small`` (``load_model('tumsyn-small')``): whole-volume time.
3. CPU fallback: the small model again under a CUDA memory cap (``--oom-cap-mb``) so small that
   CUDA runs out of memory; the out-of-memory error is logged and the volume finished on the CPU.

FLOPs are counted, not estimated: windows through the encoder and queries through the decoder MLP
(forward hooks) times the FLOPs of one window / one query (``torch.utils.flop_counter``). If the
faithful super-resolution run would not fit the time budget (``--budget-s``; its time is predicted
from the faithful scale-1 run), it runs on a centred crop and the fast mode reruns on the same crop
for the comparison; the JSON says so. On one H100 the whole suite is meant to take under 10 minutes
(not yet measured). The JSON is rewritten after every case, so a run cut short keeps what it did.

Results: ``gpu_suite.json`` (and ``gpu_suite.log``) under ``--out``, else ``$OUT``, else
``./gpu_suite_out``; a table on stdout.

    python benchmarks/gpu_suite.py                              # CUDA: the full suite
    python benchmarks/gpu_suite.py --cpu --shape 64x64x64       # CPU path at a reduced size

On the CPU (``--cpu`` or no CUDA) the official-size network would take hours, so a reduced network
of the same architecture and checkpoint layout (``--net mini``) is the default there.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger("gpu_suite")

PROMPT = ("Age: 40; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (1.0, 1.0, 1.0); "
          "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)")
SMALL_PROMPT = ("Age: 40; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (1.0, 1.0, 1.0); "
                "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (6000.0, 100.0, None, 90.0)")

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by device-name fragment; first match wins.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM (HBM3)
    ("A100", 312.0),
    ("L40S", 362.0),
)


def bf16_peak(name: str) -> float | None:
    for fragment, peak in BF16_PEAK_TFLOPS:
        if fragment.lower() in name.lower():
            return peak
    return None


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.lower().split("x")]
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"shape must be AxBxC, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def brain_phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A brain-like volume at 1 mm: an ellipsoidal 'brain' (zero background, as skull-stripped),
    a brighter inner 'white matter' ellipsoid, dark 'ventricles', smooth texture and mild noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape), indexing="ij")
    r2 = sum((g / 0.9) ** 2 for g in grids)
    brain = r2 < 1.0
    wm = sum((g / 0.6) ** 2 for g in grids) < 1.0
    vent = ((grids[0] / 0.12) ** 2 + (grids[1] / 0.3) ** 2 + (grids[2] / 0.15) ** 2) < 1.0
    texture = gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.0)
    texture /= float(np.abs(texture).max()) or 1.0
    vol = np.where(brain, 600.0, 0.0) + np.where(wm, 250.0, 0.0) - np.where(vent, 500.0, 0.0)
    vol = vol + brain * (80.0 * texture + rng.normal(0.0, 10.0, shape))
    return np.clip(vol, 0.0, None).astype(np.float32)


def mini_config():
    """A reduced network of the published architecture for the CPU path (same checkpoint layout)."""
    from tumsyn_bids.models.configs import ModelConfig, SynthesisConfig, TextConfig

    return ModelConfig(
        name="tumsyn-official-mini",
        text=TextConfig(width=64, layers=1, heads=1, embed_dim=32),
        synthesis=SynthesisConfig(enc_width=16, n_resblocks=2, feat_dim=48, text_dim=32, heads=1,
                                  decoder_hidden=(64, 64, 32, 16)),
        axis_order="zyx",
        window=60,
    )


def published_bundle(net: str, folder: Path, seed: int = 0):
    """Random weights in the two published checkpoint layouts, loaded back with ``load_model``."""
    import torch

    from tumsyn_bids.models.checkpoint import save_official_layout
    from tumsyn_bids.models.loading import load_model, make_random_bundle

    t0 = time.perf_counter()
    cfg = "tumsyn-official" if net == "official" else mini_config()
    rand = make_random_bundle(cfg, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_official_layout(folder / "synthesis.pth", rand.net, args={"note": "random weights, gpu_suite"})
    torch.save({"model_state_dict": rand.text_encoder.state_dict(), "epoch": 0}, folder / "stage1.pth")
    del rand
    bundle = load_model("tumsyn-official", weights=str(folder), device="cpu")
    info = {"net": net, "params": int(sum(p.numel() for p in bundle.net.parameters())),
            "text_params": int(sum(p.numel() for p in bundle.text_encoder.parameters())),
            "state_dict_entries": len(bundle.net.state_dict()), "layout": "published (model_G + model_state_dict)",
            "window": int(bundle.spec["inference"]["window"]), "axis_order": bundle.axis_order,
            "build_s": round(time.perf_counter() - t0, 2)}
    return bundle, info


def flop_model(net, window: int) -> tuple[float, float]:
    """FLOPs of one encoder (+ fusion) window of ``window``^3 voxels and of one decoder query.

    Counted with ``torch.utils.flop_counter`` on 2^3 and 4^3 windows: every encoder and fusion op
    but the text adapter is per voxel, so ``F(w) = a + b w^3`` holds exactly and extrapolates.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    dev = next(net.parameters()).device
    text = torch.zeros(1, net.config.text_dim, device=dev)

    def count(fn) -> float:
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            fn()
        return float(fc.get_total_flops())

    f2, f4 = (count(lambda w=w: net.encode(torch.zeros(1, 1, w, w, w, device=dev), text)) for w in (2, 4))
    per_voxel = (f4 - f2) / (4**3 - 2**3)
    enc = (f2 - per_voxel * 2**3) + per_voxel * window**3
    q = 64
    dec = count(lambda: net.imnet(torch.zeros(1, q, net.config.feat_dim + 3, device=dev))) / q
    return enc, dec


class Counter:
    """Windows through ``net.encoder`` and queries through ``net.imnet`` (forward hooks)."""

    def __init__(self, net):
        self.windows = 0
        self.queries = 0
        self._hooks = []
        if hasattr(net, "encoder"):
            self._hooks.append(net.encoder.register_forward_hook(self._enc))
        if hasattr(net, "imnet"):
            self._hooks.append(net.imnet.register_forward_hook(self._dec))

    def _enc(self, module, inputs, output):
        self.windows += int(inputs[0].shape[0])

    def _dec(self, module, inputs, output):
        self.queries += int(inputs[0].shape[:-1].numel())

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


def is_cuda_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_with_fallback(fn: Callable[[str], Any], device: str, *, cpu_fallback: bool) -> tuple[Any, dict[str, Any]]:
    """``fn(device)``; when CUDA runs out of memory, log it and (if allowed) finish on the CPU."""
    import torch

    try:
        return fn(device), {"device_used": device, "cuda_oom": False}
    except Exception as exc:  # noqa: BLE001 - only CUDA out-of-memory is handled
        if not is_cuda_oom(exc):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if not cpu_fallback:
            log.warning("CUDA out of memory on %s (%s); no CPU fallback for this case", device, first)
            return None, {"device_used": device, "cuda_oom": True, "oom_message": first, "fallback": None}
        log.warning("CUDA out of memory on %s (%s); falling back to the CPU", device, first)
        t0 = time.perf_counter()
        result = fn("cpu")
        log.warning("CPU fallback finished in %.1f s", time.perf_counter() - t0)
        return result, {"device_used": "cpu", "cuda_oom": True, "oom_message": first, "fallback": "cpu",
                        "fallback_s": round(time.perf_counter() - t0, 2)}


def compare(ref: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """PSNR (range of ``ref``), max and mean |diff| on the common grid."""
    common = tuple(min(a, b) for a, b in zip(ref.shape, other.shape, strict=False))
    sl = tuple(slice(0, n) for n in common)
    a, b = ref[sl].astype(np.float64), other[sl].astype(np.float64)
    diff = np.abs(a - b)
    rng = float(a.max() - a.min()) or 1.0
    mse = float(np.mean(diff**2))
    return {"psnr_db": (float("inf") if mse == 0 else round(10 * math.log10(rng**2 / mse), 3)),
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "range": rng,
            "shapes_equal": ref.shape == other.shape, "compared_shape": list(common)}


def centred_crop(vol: np.ndarray, factor: float, window: int) -> tuple[np.ndarray, list[int]]:
    """A centred crop holding about ``factor`` of the voxels (each axis at least one window)."""
    edge = factor ** (1.0 / 3.0)
    shape = [min(n, max(window, int(n * edge))) for n in vol.shape]
    lo = [(n - m) // 2 for n, m in zip(vol.shape, shape, strict=False)]
    return np.ascontiguousarray(vol[tuple(slice(a, a + m) for a, m in zip(lo, shape, strict=False))]), shape


class Suite:
    """Runs cases, keeps their records and outputs."""

    def __init__(self, args, device: str, peak: float | None, out: Path):
        self.args, self.device, self.peak, self.out = args, device, peak, out
        self.t0 = time.perf_counter()
        self.meta: dict[str, Any] = {}
        self.cases: list[dict[str, Any]] = []
        self.comparisons: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def save_partial(self) -> None:
        """The results so far (a run killed at its time limit still leaves them)."""
        partial = {"meta": self.meta, "cases": self.cases, "comparisons": self.comparisons,
                   "skipped": self.skipped, "partial": True, "wall_s": round(self.elapsed(), 2)}
        (self.out / "gpu_suite.json").write_text(json.dumps(partial, indent=2, default=str) + "\n")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def case(self, label: str, bundle, image, *, mode: str, scale: float, prompt: str, flops=None,
             cpu_fallback: bool = False, window: int | None = None, extra: dict | None = None):
        """One synthesis, timed and counted; returns (record, data or None)."""
        import torch

        from tumsyn_bids.inference.engine import synthesize

        voxel = None if scale == 1 else 1.0 / scale
        counter = Counter(bundle.net) if flops else None
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

        def go(dev: str):
            return synthesize(image, np.eye(4), prompt, bundle, voxel_size=voxel, device=dev, mode=mode,
                              progress=False, window=window)

        rec: dict[str, Any] = {"case": label, "model": bundle.name, "mode": mode, "scale": scale,
                               "shape_in": list(image.shape), **(extra or {})}
        if self.elapsed() > self.args.budget_s:
            self.skipped.append(f"{label}: the {self.args.budget_s:.0f} s budget is spent")
            if counter is not None:
                counter.close()
            return rec, None
        log.info("case %s: %s mode, scale %g, input %s, on %s", label, mode, scale, image.shape, self.device)
        try:
            res, info = run_with_fallback(go, self.device, cpu_fallback=cpu_fallback)
        except Exception as exc:  # noqa: BLE001 - record it and go on: the other cases still count
            log.exception("case %s failed", label)
            res, info = None, {"device_used": self.device, "error": f"{type(exc).__name__}: {exc}"[:500]}
        rec.update(info)
        if cuda:
            rec["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            rec["peak_cuda_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
        if counter is not None:
            counter.close()
        if res is None:
            self.cases.append(rec)
            self.save_partial()
            return rec, None
        sec = float(res.seconds)
        rec.update({"shape_out": list(res.data.shape), "dtype": res.dtype, "batch": res.batch_size,
                    "windows": int(res.windows), "encoded": int(res.encoded), "seconds": round(sec, 3),
                    "windows_per_s": round(res.windows / sec, 3),
                    "encode_s": round(float(res.timings.get("encode", float("nan"))), 3),
                    "decode_s": round(float(res.timings.get("decode", float("nan"))), 3),
                    "voxel_size": [round(v, 6) for v in res.voxel_size]})
        if flops and counter is not None:
            f_enc, f_q = flops
            enc_flops = counter.windows * f_enc
            total = enc_flops + counter.queries * f_q
            enc_s = float(res.timings.get("encode", 0.0)) or float("nan")
            rec.update({"encoder_windows": counter.windows, "decoder_queries": counter.queries,
                        "tflop": sig(total / 1e12), "tflops": sig(total / sec / 1e12),
                        "encoder_tflops": sig(enc_flops / enc_s / 1e12)})
            if self.peak:
                rec["pct_bf16_peak"] = round(100 * rec["tflops"] / self.peak, 2)
                rec["encoder_pct_bf16_peak"] = round(100 * rec["encoder_tflops"] / self.peak, 2)
        log.info("case %s: %.2f s, %d windows (%d encoded), out %s", label, sec, res.windows, res.encoded,
                 res.data.shape)
        self.cases.append(rec)
        self.save_partial()
        return rec, res.data

    def pair(self, scale: float, fast: tuple, faithful: tuple, note: str = "") -> None:
        (rf, df), (rp, dp) = fast, faithful
        if df is None or dp is None:
            return
        cmp = {"scale": scale, "fast_case": rf["case"], "faithful_case": rp["case"], **compare(dp, df),
               "speedup_fast_vs_faithful": round(rp["seconds"] / rf["seconds"], 3)}
        if note:
            cmp["note"] = note
        self.comparisons.append(cmp)


def sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits (NaN stays NaN)."""
    return float(f"{x:.{digits}g}")


def fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


def table(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [f"device: {meta['device_name']} ({meta['device']}), bf16 peak "
             f"{fmt(meta['bf16_peak_tflops'], 0)} TFLOP/s, torch {meta['torch']}, net {meta['official']['net']} "
             f"({meta['official']['params']:,} params), input {meta['shape']}"]
    head = (f"{'case':24s} {'dev':5s} {'dtype':8s} {'out':>13s} {'win':>5s} {'enc':>5s} {'sec':>8s} {'win/s':>7s} "
            f"{'TFLOP/s':>8s} {'encTF/s':>8s} {'%pk':>5s} {'enc%pk':>6s} {'peakGB':>7s}")
    lines += [head, "-" * len(head)]
    for r in result["cases"]:
        out = "x".join(str(v) for v in r.get("shape_out", [])) or (
            "OOM" if r.get("cuda_oom") else "ERROR" if r.get("error") else "-")
        dev = str(r.get("device_used", "-")).replace("cuda:0", "cuda")[:5]
        lines.append(
            f"{r['case'][:24]:24s} {dev:5s} {str(r.get('dtype', '-')):8s} {out:>13s} {fmt(r.get('windows')):>5s} "
            f"{fmt(r.get('encoded')):>5s} {fmt(r.get('seconds')):>8s} {fmt(r.get('windows_per_s')):>7s} "
            f"{fmt(r.get('tflops'), 4):>8s} {fmt(r.get('encoder_tflops'), 4):>8s} {fmt(r.get('pct_bf16_peak'), 1):>5s} "
            f"{fmt(r.get('encoder_pct_bf16_peak'), 1):>6s} {fmt(r.get('peak_cuda_gb')):>7s}")
    for c in result["comparisons"]:
        lines.append(f"fast vs faithful at scale {c['scale']:g}: speed-up {c['speedup_fast_vs_faithful']:.2f}x, "
                     f"PSNR {fmt(c['psnr_db'])} dB, max|diff| {c['max_abs_diff']:.4g}, "
                     f"mean|diff| {c['mean_abs_diff']:.4g} (range {c['range']:.3g})"
                     + (f" [{c['note']}]" if c.get("note") else ""))
    fb = result.get("fallback", {})
    if fb.get("skipped"):
        lines.append(f"CPU fallback: skipped ({fb['skipped']})")
    elif fb:
        lines.append(f"CPU fallback under a {fb['cap_mb']} MB CUDA cap: cuda_oom={fb.get('cuda_oom')} "
                     f"finished on {fb.get('device_used')} in {fmt(fb.get('seconds'))} s")
    for s in result.get("skipped", []):
        lines.append(f"skipped: {s}")
    lines.append(f"suite wall time {result['wall_s']:.1f} s; JSON: {result['json']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_shape, default=(180, 220, 180), help="input size at 1 mm (180x220x180)")
    parser.add_argument("--sr", type=float, default=2.0, help="super-resolution factor of the second scale (2)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (the reduced network unless --net official)")
    parser.add_argument("--net", choices=("official", "mini"), default=None,
                        help="official size (default on CUDA) or a reduced one (default on the CPU)")
    parser.add_argument("--window", type=int, default=None, help="override the window (tests; default: the model's)")
    parser.add_argument("--out", default=None, help="results folder (default $OUT, else ./gpu_suite_out)")
    parser.add_argument("--budget-s", type=float, default=500.0,
                        help="wall-time budget; the faithful SR run is cropped to fit it (default 500)")
    parser.add_argument("--memory-cap-gb", type=float, default=None,
                        help="CUDA memory cap for the official cases (e.g. 40); out of memory is logged, not fatal")
    parser.add_argument("--oom-cap-mb", type=float, default=48.0,
                        help="CUDA memory cap that forces the CPU-fallback case out of memory (48)")
    parser.add_argument("--skip-small", action="store_true", help="skip the shipped small model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the card's dense bf16 peak, if not in the table")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    out = Path(args.out or os.environ.get("OUT") or "gpu_suite_out")
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "gpu_suite.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = (log, logging.getLogger("tumsyn_bids"))
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)
        lg.addHandler(handler)
    log.addHandler(stream)

    try:
        return _run(args, out, t_start)
    finally:
        for lg, level in zip(loggers, levels, strict=False):
            lg.removeHandler(handler)
            lg.setLevel(level)
        log.removeHandler(stream)
        handler.close()


def _run(args, out: Path, t_start: float) -> int:
    import torch

    from tumsyn_bids.models.loading import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        log.warning("CUDA is not available: running the CPU path")
    device = "cuda:0" if cuda else "cpu"
    net_kind = args.net or ("official" if cuda else "mini")
    name = torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine() or "cpu")
    peak = args.peak_tflops or (bf16_peak(name) if cuda else None)
    total_gb = torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None
    suite = Suite(args, device, peak, out)
    suite.t0 = t_start
    skipped = suite.skipped

    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        bundle, official_info = published_bundle(net_kind, Path(tmp) / "published")
    window = int(args.window or official_info["window"])
    flops = flop_model(bundle.net, window)
    meta = {
        "device": device, "device_name": name, "bf16_peak_tflops": peak,
        "cuda_total_gb": round(total_gb, 2) if total_gb else None,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "shape": list(args.shape), "sr": args.sr, "window": window,
        "official": official_info, "flops_per_window_encoder": flops[0], "flops_per_query_decoder": flops[1],
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "memory_cap_gb": args.memory_cap_gb, "budget_s": args.budget_s,
    }
    suite.meta = meta
    log.info("device %s (%s), net %s: %s params, %.1f TFLOP per %d^3 window + %.2f MFLOP per query",
             device, name, net_kind, f"{official_info['params']:,}", flops[0] / 1e12, window, flops[1] / 1e6)
    image = brain_phantom(args.shape)

    if cuda:  # warm-up: kernels, cuDNN/cuBLAS handles (not timed)
        from tumsyn_bids.inference.engine import synthesize

        cube = brain_phantom((window, window, window), seed=1)
        for mode in ("fast", "faithful"):
            synthesize(cube, np.eye(4), PROMPT, bundle, device=device, mode=mode, progress=False, window=window)
        torch.cuda.synchronize()
        if args.memory_cap_gb:
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gb / total_gb))

    # 1. the official-size network: fast vs faithful at scale 1 and at SR
    kw = dict(prompt=PROMPT, flops=flops, window=window)
    f1 = suite.case("official fast x1", bundle, image, mode="fast", scale=1.0, **kw)
    p1 = suite.case("official faithful x1", bundle, image, mode="faithful", scale=1.0, **kw)
    suite.pair(1.0, f1, p1)
    sr = float(args.sr)
    f2 = suite.case(f"official fast x{sr:g}", bundle, image, mode="fast", scale=sr, **kw)
    # predicted faithful SR time from the faithful scale-1 run: encoding as before, sr^3 the decoding
    reserve = 30.0 if args.skip_small else 60.0
    if p1[1] is not None:
        r = p1[0]
        predicted = r["encode_s"] + r["decode_s"] * sr**3 + (r["seconds"] - r["encode_s"] - r["decode_s"]) * sr**3
        left = args.budget_s - suite.elapsed() - reserve
        if predicted <= left:
            p2 = suite.case(f"official faithful x{sr:g}", bundle, image, mode="faithful", scale=sr, **kw)
            suite.pair(sr, f2, p2)
        elif left > 0.05 * predicted:
            crop, shape = centred_crop(image, left / predicted * 0.8, window)
            note = f"faithful x{sr:g} predicted {predicted:.0f} s > {left:.0f} s left: both on a centred {shape} crop"
            log.warning(note)
            extra = {"crop": shape}
            p2 = suite.case(f"official faithful x{sr:g} crop", bundle, crop, mode="faithful", scale=sr,
                            extra=extra, **kw)
            f2c = suite.case(f"official fast x{sr:g} crop", bundle, crop, mode="fast", scale=sr, extra=extra, **kw)
            suite.pair(sr, f2c, p2, note)
        else:
            skipped.append(f"official faithful x{sr:g}: predicted {predicted:.0f} s, {left:.0f} s left")
    else:
        skipped.append(f"official faithful x{sr:g}: the faithful x1 run did not finish")
    if cuda:
        torch.cuda.set_per_process_memory_fraction(1.0)
    bundle.to("cpu")
    del bundle
    if cuda:
        torch.cuda.empty_cache()

    # 2. the shipped small model, whole volume (public API only)
    fallback: dict[str, Any] = {}
    if not args.skip_small:
        small = load_model("tumsyn-small", device="cpu")
        suite.case("tumsyn-small fast x1", small, image, mode="fast", scale=1.0, prompt=SMALL_PROMPT)
        # 3. CPU fallback: CUDA capped so small that the run cannot fit
        if cuda:
            small.to("cpu")
            torch.cuda.empty_cache()
            cap = args.oom_cap_mb * 2**20
            torch.cuda.set_per_process_memory_fraction(min(1.0, cap / (total_gb * 2**30)))
            try:
                rec, _ = suite.case("tumsyn-small OOM->CPU", small, image, mode="fast", scale=1.0,
                                    prompt=SMALL_PROMPT, cpu_fallback=True)
            finally:
                torch.cuda.set_per_process_memory_fraction(1.0)
                torch.cuda.empty_cache()
            fallback = {"cap_mb": args.oom_cap_mb, "cuda_oom": rec.get("cuda_oom"),
                        "device_used": rec.get("device_used"), "seconds": rec.get("seconds"),
                        "oom_message": rec.get("oom_message")}
        else:
            fallback = {"skipped": "no CUDA device"}
    else:
        fallback = {"skipped": "--skip-small"}

    result = {"meta": meta, "cases": suite.cases, "comparisons": suite.comparisons, "fallback": fallback,
              "skipped": skipped, "wall_s": round(time.perf_counter() - t_start, 2),
              "json": str(out / "gpu_suite.json")}
    text = table(result)
    result["table"] = text
    (out / "gpu_suite.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
