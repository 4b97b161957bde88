"""Synthesis quality on held-out simulated subjects: the model against two classical baselines.

Tasks: T1w->T2w, T1w->FLAIR, T1w->PDw, T2w->T1w, FLAIR->T1w, PDw->T1w and thick-slice (1x1x5 mm)
T1w -> 1 mm T2w. Subjects are simulated (default protocols, deformation, bias, noise,
skull-stripped) from label maps that were held out of training; the reference is the simulated
target acquisition. Baselines, in the same run:
  (a) hist:  the input histogram-matched to the target within the brain mask
             (skimage.exposure.match_histograms; it sees the target's histogram: an optimistic baseline);
  (b) lut:   a per-intensity-bin lookup (64 bins) of mean target intensity given the source
             intensity, learned from the joint histograms of simulated TRAINING subjects.
Metrics: PSNR/SSIM after percentile 0.01/99.9 normalisation, whole volume and within the mask.

    python benchmarks/quality.py --labelmaps /work/shared/data/labelmaps [--weights model.pt]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

TASKS = [("T1w", "T2w"), ("T1w", "FLAIR"), ("T1w", "PDw"), ("T2w", "T1w"), ("FLAIR", "T1w"), ("PDw", "T1w"),
         ("T1w@1x1x5", "T2w")]
CONTRASTS = ["T1w", "T2w", "FLAIR", "PDw"]
BINS = 64


def simulate(source: str, rng: np.random.Generator, field: float, thick: bool):
    """All benchmark contrasts of one subject (plus the thick-slice T1w), default protocols."""
    from tumsyn_bids.physics.simulate import draw_subject, simulate_subject
    from tumsyn_bids.training.data_sim import SNR_RANGE, cropped_phantom

    phantom = cropped_phantom(source)
    draw = draw_subject(phantom, field, rng)
    kw = dict(field_strength=field, snr=SNR_RANGE, skull_strip=True, subject=draw)
    sims = simulate_subject(phantom, CONTRASTS, rng, **kw)
    if thick:
        sims["T1w@1x1x5"] = simulate_subject(phantom, ["T1w"], rng, thick_slice=(2, 5.0), **kw)["T1w"]
    return sims


def to_grid(data: np.ndarray, affine: np.ndarray, ref_shape, ref_affine) -> np.ndarray:
    """Linear resampling of ``data`` onto a reference grid (world coordinates)."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(affine) @ ref_affine
    return affine_transform(data, m[:3, :3], m[:3, 3], output_shape=ref_shape, order=1).astype(np.float32)


def crop_box(data: np.ndarray, affine: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """``data[lo:hi]`` and the affine of that sub-grid."""
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    out = affine.copy()
    out[:3, 3] += affine[:3, :3] @ np.asarray(lo, float)
    return np.ascontiguousarray(data[sl]), out


def crop_subject(sims: dict, ref: str, size: int) -> dict:
    """Every image cut to the world box of a ``size``^3 block around the brain centre of ``ref``'s grid."""
    ref_img = sims[ref]
    shape = np.array(ref_img.data.shape)
    centre = np.argwhere(ref_img.mask).mean(0).round().astype(int)
    lo = np.clip(centre - size // 2, 0, np.maximum(shape - size, 0))
    hi = np.minimum(lo + size, shape)
    corners = np.array([[a, b, c, 1.0] for a in (lo[0], hi[0] - 1) for b in (lo[1], hi[1] - 1)
                        for c in (lo[2], hi[2] - 1)])
    world = corners @ ref_img.affine.T
    out = {}
    for key, img in sims.items():
        if img.data.shape == ref_img.data.shape and np.allclose(img.affine, ref_img.affine):
            ilo, ihi = lo, hi
        else:
            vox = world @ np.linalg.inv(img.affine).T
            ilo = np.clip(np.floor(vox[:, :3].min(0)) - 1, 0, None).astype(int)
            ihi = np.minimum(np.ceil(vox[:, :3].max(0)) + 2, img.data.shape).astype(int)
        data, aff = crop_box(img.data, img.affine, ilo, ihi)
        mask, _ = crop_box(img.mask, img.affine, ilo, ihi)
        out[key] = dataclasses.replace(img, data=data, affine=aff, mask=mask)
    return out


def learn_lut(train_sims: list[dict], src: str, tgt: str) -> np.ndarray:
    """Mean normalised target intensity per normalised source-intensity bin (training subjects)."""
    from tumsyn_bids.evaluation import percentile_normalize

    sums, counts = np.zeros(BINS), np.zeros(BINS)
    for sims in train_sims:
        mask = sims[tgt].mask
        s = percentile_normalize(sims[src].data)[mask]
        t = percentile_normalize(sims[tgt].data)[mask]
        idx = np.clip((s * BINS).astype(int), 0, BINS - 1)
        sums += np.bincount(idx, t, BINS)
        counts += np.bincount(idx, None, BINS)
    lut = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    good = ~np.isnan(lut)
    return np.interp(np.arange(BINS), np.flatnonzero(good), lut[good])


def apply_lut(image: np.ndarray, mask: np.ndarray, lut: np.ndarray) -> np.ndarray:
    from tumsyn_bids.evaluation import percentile_normalize

    s = percentile_normalize(image)
    centres = (np.arange(BINS) + 0.5) / BINS
    return (np.interp(s, centres, lut) * mask).astype(np.float32)


def hist_match(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from skimage.exposure import match_histograms

    out = np.zeros_like(image, dtype=np.float32)
    out[mask] = match_histograms(image[mask], target[mask])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelmaps", required=True, help="folder of label maps (e.g. the SynthSeg/SynthSR training maps)")
    ap.add_argument("--held-out", nargs="+", default=["synthseg_training_seg_15", "synthsr_brain5"])
    ap.add_argument("--train-maps", nargs="+", default=["synthsr_brain1", "synthsr_brain2"],
                    help="training label maps for the lookup baseline")
    ap.add_argument("--model", default="tumsyn-small")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--window", type=int, default=None, help="engine window (default: the model's)")
    ap.add_argument("--field", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crop", type=int, default=0, help="evaluate a central N^3 block (0: whole brain)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    t_start = time.time()

    import torch

    torch.set_num_threads(args.threads)
    from tumsyn_bids.contrasts import get_contrast
    from tumsyn_bids.evaluation import compare
    from tumsyn_bids.inference.engine import synthesize
    from tumsyn_bids.models.loading import load_model
    from tumsyn_bids.prompts import Prompt
    from tumsyn_bids.protocols import default_protocol
    from tumsyn_bids.training.data_sim import labelmap_files, stem

    files = {stem(f): str(f) for f in labelmap_files([args.labelmaps])}
    missing = [m for m in args.held_out + args.train_maps if m not in files]
    if missing:
        print(f"quality.py: error: label maps not found in {args.labelmaps}: {missing}", file=sys.stderr)
        return 66
    bundle = load_model(args.model, weights=args.weights)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    train_sims = [simulate(files[m], rng, args.field, thick=False) for m in args.train_maps]
    luts = {(s, t): learn_lut(train_sims, s, t) for s, t in {(s.split("@")[0], t) for s, t in TASKS}}
    rows, synth_seconds = [], []
    for held in args.held_out:
        sims = simulate(files[held], rng, args.field, thick=True)
        if args.crop:
            sims = crop_subject(sims, "T2w", args.crop)
        for src, tgt in TASKS:
            s_img, t_img = sims[src], sims[tgt]
            mask = t_img.mask
            proto = default_protocol(tgt, args.field)
            prompt = Prompt(get_contrast(tgt).prompt_modality, (1.0, 1.0, 1.0), age=t_img.prompt.age, sex=t_img.prompt.sex,
                            field_strength=args.field, vendor=proto.vendor, tr_ms=proto.tr_ms, te_ms=proto.te_ms,
                            ti_ms=proto.ti_ms, flip_angle=proto.flip_angle)
            res = synthesize(s_img.data, s_img.affine, prompt, bundle, voxel_size=(1.0, 1.0, 1.0), device="cpu",
                             progress=False, window=args.window)
            synth_seconds.append(res.seconds)
            model_out = to_grid(res.data, res.affine, t_img.data.shape, t_img.affine) * mask
            same_grid = s_img.data.shape == t_img.data.shape and np.allclose(s_img.affine, t_img.affine)
            src_on_grid = s_img.data if same_grid else to_grid(s_img.data, s_img.affine, t_img.data.shape,
                                                               t_img.affine)
            candidates = {
                "model": model_out,
                "hist": hist_match(src_on_grid, t_img.data, mask),
                "lut": apply_lut(src_on_grid * mask, mask, luts[(src.split("@")[0], tgt)]),
            }
            for method, out in candidates.items():
                m = compare(out, t_img.data, mask)
                rows.append({"subject": held, "task": f"{src}->{tgt}", "method": method,
                             "psnr_masked": m["masked"]["psnr"], "ssim_masked": m["masked"]["ssim"],
                             "psnr": m["whole"]["psnr"], "ssim": m["whole"]["ssim"]})
            print(f"{held} {src}->{tgt}: " + ", ".join(
                f"{r['method']} {r['psnr_masked']:.2f}/{r['ssim_masked']:.3f}" for r in rows[-3:]), file=sys.stderr)
    print_table(rows)
    print(f"\nmodel {bundle.name} sha256 {bundle.sha256[:12]}; field {args.field} T; held-out {args.held_out}; "
          f"crop {args.crop or 'none'}; synthesis {np.mean(synth_seconds):.1f} s per image (engine, CPU); total {time.time() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def print_table(rows: list[dict]) -> None:
    """Mean over subjects per task and method: masked PSNR/SSIM, then whole-volume PSNR/SSIM."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = ["model", "hist", "lut"]
    head = f"{'task':<20}" + "".join(f"{m + ' mPSNR':>13}{'mSSIM':>7}" for m in methods) + \
        "".join(f"{m + ' PSNR':>12}{'SSIM':>7}" for m in methods)
    print(head)
    for task in tasks:
        line = f"{task:<20}"
        for keys in (("psnr_masked", "ssim_masked"), ("psnr", "ssim")):
            for m in methods:
                sel = [r for r in rows if r["task"] == task and r["method"] == m]
                line += f"{np.mean([r[keys[0]] for r in sel]):>{13 if keys[0] == 'psnr_masked' else 12}.2f}"
                line += f"{np.mean([r[keys[1]] for r in sel]):>7.3f}"
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
