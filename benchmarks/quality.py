"""Synthesis quality on held-out simulated subjects: the model against classical baselines.

Tasks: T1w->T2w, T1w->FLAIR, T1w->PDw, T2w->T1w, FLAIR->T1w, PDw->T1w, thick-slice (1x1x5 mm)
T1w -> 1 mm T2w, and a lesion case (a white-matter lesion painted into the held-out label map,
simulated with the lesion tissue values: T1w->T2w and T1w->FLAIR). Subjects are simulated from
label maps held out of training (default protocols, deformation, skull-stripped). Tissue values:
``--spread 0`` (default) renders every subject at the population-mean relaxation values, so the
target is deterministic; ``--spread 1`` draws them with realistic between-subject spread. Sources
carry bias and Rician noise unless ``--clean``; the reference is the target's noise- and bias-free
image. The model gets the source image's own prompt, as the app passes it (``--unknown-source``
withholds it). Baselines, in the same run:
  (a) hist:      the source histogram-matched to the target within the brain mask
                 (skimage.exposure.match_histograms; it sees the target's histogram: optimistic);
  (b) hist-inv:  the source inverted (max - source inside the mask), then histogram-matched
                 (strong on contrast-reversing tasks such as T1w->T2w);
  (c) lut:       a per-intensity-bin lookup (64 bins) of mean target intensity given the source
                 intensity, learned from the joint histograms of simulated TRAINING subjects.
Metrics: PSNR/SSIM after percentile 0.01/99.9 normalisation, whole volume and within the mask.

    python benchmarks/quality.py --labelmaps DIR_OF_LABEL_MAPS [--weights model.pt] [--spread 1]
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
         ("T1w@1x1x5", "T2w"), ("lesion:T1w", "lesion:T2w"), ("lesion:T1w", "lesion:FLAIR")]
CONTRASTS = ["T1w", "T2w", "FLAIR", "PDw"]
METHODS = ["model", "hist", "hist-inv", "lut"]  # + "refined" with --refine
# --multi: leave-one-out source sets (the first source is the reference the network reads)
MULTI_TASKS = [(("T1w", "T2w"), "FLAIR"), (("T1w", "FLAIR"), "T2w"), (("T2w", "FLAIR"), "T1w"),
               (("T1w", "T2w", "FLAIR"), "PDw")]
BINS = 64
LESION_LABEL = 77  # FreeSurfer WM-hypointensities: simulated with the 'lesion' tissue kind


def lesioned_phantom(phantom, radius_mm: float = 9.0):
    """The phantom with an irregular lesion painted into cerebral white matter near the brain's centre."""
    from tumsyn_bids.physics.phantoms import Phantom  # noqa: F401  (type of the argument)
    from tumsyn_bids.physics.tissues import TissueClass

    labels = phantom.labels.copy()
    wm = labels == phantom.class_index("cerebral_wm")
    centre = np.argwhere(wm).mean(0)
    idx = np.argwhere(wm)
    centre = idx[np.argmin(((idx - centre) ** 2).sum(1))] + np.array([0, 12, 8])
    grid = np.indices(labels.shape).transpose(1, 2, 3, 0) - centre
    vox = np.asarray(phantom.voxel_size)
    r = np.sqrt((((grid * vox) / np.array([radius_mm, 0.8 * radius_mm, 0.7 * radius_mm])) ** 2).sum(-1))
    blob = (r < 1.0) & phantom.brain_mask
    classes = tuple(phantom.classes) + (TissueClass("lesion", "lesion"),)
    labels[blob] = len(phantom.classes)
    return dataclasses.replace(phantom, classes=classes, labels=labels), blob


def simulate(source: str, rng: np.random.Generator, field: float, spread: float, clean: bool):
    """All benchmark contrasts of one subject (thick-slice T1w and the lesioned copy included)."""
    from tumsyn_bids.physics.simulate import SubjectDraw, draw_subject, simulate_subject
    from tumsyn_bids.physics.tissues import draw_population_properties
    from tumsyn_bids.training.data_sim import SNR_RANGE, cropped_phantom

    phantom = cropped_phantom(source)
    draw = draw_subject(phantom, field, rng)
    lesioned, _ = lesioned_phantom(phantom)
    props = draw_population_properties(lesioned, field, rng, spread)
    n = len(phantom.classes)
    base_props = dataclasses.replace(props, classes=props.classes[:n], t1=props.t1[:n], t2=props.t2[:n],
                                     t2s=props.t2s[:n], pd=props.pd[:n], gd_mm=props.gd_mm[:n],
                                     susceptibility=props.susceptibility[:n])
    kw = dict(field_strength=field, skull_strip=True, noise=not clean, bias=not clean, snr=SNR_RANGE)
    sims = simulate_subject(phantom, CONTRASTS, rng,
                            subject=SubjectDraw(draw.age, draw.sex, base_props, draw.transform), **kw)
    sims["T1w@1x1x5"] = simulate_subject(phantom, ["T1w"], rng, thick_slice=(2, 5.0),
                                         subject=SubjectDraw(draw.age, draw.sex, base_props, draw.transform),
                                         **kw)["T1w"]
    les = simulate_subject(lesioned, ["T1w", "T2w", "FLAIR"], rng,
                           subject=SubjectDraw(draw.age, draw.sex, props, draw.transform), **kw)
    sims.update({f"lesion:{k}": v for k, v in les.items()})
    return sims


def to_grid(data: np.ndarray, affine: np.ndarray, ref_shape, ref_affine) -> np.ndarray:
    """Linear resampling of ``data`` onto a reference grid (world coordinates)."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(affine) @ ref_affine
    return affine_transform(data, m[:3, :3], m[:3, 3], output_shape=ref_shape, order=1).astype(np.float32)


def crop_box(data: np.ndarray, affine: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """``data[lo:hi]`` and the affine of that sub-grid."""
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=False))
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
        truth, _ = crop_box(img.ground_truth, img.affine, ilo, ihi)
        out[key] = dataclasses.replace(img, data=data, affine=aff, mask=mask, ground_truth=truth)
    return out


def _base(source: str) -> str:
    """Contrast of a task's source key ('lesion:T1w' -> 'T1w', 'T1w@1x1x5' -> 'T1w')."""
    return source.split(":")[-1].split("@")[0]


def learn_lut(train_sims: list[dict], src: str, tgt: str) -> np.ndarray:
    """Mean normalised target intensity per normalised source-intensity bin (training subjects)."""
    from tumsyn_bids.evaluation import percentile_normalize

    sums, counts = np.zeros(BINS), np.zeros(BINS)
    for sims in train_sims:
        mask = sims[tgt].mask
        s = percentile_normalize(sims[src].data)[mask]
        t = percentile_normalize(sims[tgt].ground_truth)[mask]
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


def hist_match_inverted(image: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The source inverted inside the mask (max - value), then histogram-matched to the target."""
    inverted = np.where(mask, float(image[mask].max()) - image, 0.0).astype(np.float32)
    return hist_match(inverted, target, mask)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelmaps", required=True, help="folder of label maps (e.g. the SynthSeg/SynthSR training maps)")
    ap.add_argument("--held-out", nargs="+", default=["synthseg_training_seg_15", "synthseg_training_seg_16",
                                                       "synthsr_brain5"])
    ap.add_argument("--train-maps", nargs="+", default=["synthsr_brain1", "synthsr_brain2"],
                    help="training label maps for the lookup baseline")
    ap.add_argument("--model", default="tumsyn-small")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--window", type=int, default=None, help="engine window (default: the model's)")
    ap.add_argument("--field", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--spread", type=float, default=0.0,
                    help="tissue-value spread: 0 = population means (deterministic targets), 1 = realistic")
    ap.add_argument("--clean", action="store_true", help="sources without bias and noise")
    ap.add_argument("--unknown-source", action="store_true",
                    help="do not give the model the source's own prompt (as for a source without sidecar)")
    ap.add_argument("--tasks", nargs="+", default=None, help="subset of tasks, e.g. T1w->T2w")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crop", type=int, default=0, help="evaluate a central N^3 block (0: whole brain)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--refine", action="store_true",
                    help="also score the model with the physics-consistency refinement (method 'refined')")
    ap.add_argument("--multi", action="store_true",
                    help="multi-source leave-one-out (MULTI_TASKS): the refined model from every source against the "
                         "same model from the best single source and the best single-source baselines")
    ap.add_argument("--kappa", type=float, default=None, help="refinement: accepted relative mismatch")
    ap.add_argument("--tau", type=float, default=None, help="refinement: prior width (WM -> GM = 1)")
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
    tasks = [t for t in TASKS if args.tasks is None or f"{t[0]}->{t[1]}" in args.tasks]
    train_sims = [simulate(files[m], rng, args.field, args.spread, args.clean) for m in args.train_maps]
    luts = {(s, t): learn_lut(train_sims, s, t) for s, t in {(_base(s), t) for s, t in tasks}}
    rows, synth_seconds = [], []
    if args.multi:
        tasks = []
    for held in args.held_out:
        sims = simulate(files[held], rng, args.field, args.spread, args.clean)
        if args.crop:
            sims = crop_subject(sims, "T2w", args.crop)
        if args.multi:
            rows += multi_rows(held, sims, bundle, args)
        for src, tgt in tasks:
            s_img, t_img = sims[src], sims[tgt]
            mask = t_img.mask
            reference = t_img.ground_truth
            tgt_name = tgt.split(":")[-1]
            proto = default_protocol(tgt_name, args.field)
            prompt = Prompt(get_contrast(tgt_name).prompt_modality, (1.0, 1.0, 1.0),
                            age=t_img.prompt.age, sex=t_img.prompt.sex,
                            field_strength=args.field, vendor=proto.vendor, tr_ms=proto.tr_ms, te_ms=proto.te_ms,
                            ti_ms=proto.ti_ms, flip_angle=proto.flip_angle)
            res = synthesize(s_img.data, s_img.affine, prompt, bundle, voxel_size=(1.0, 1.0, 1.0), device="cpu",
                             progress=False, window=args.window,
                             source_prompt=None if args.unknown_source else s_img.prompt)
            synth_seconds.append(res.seconds)
            model_out = to_grid(res.data, res.affine, t_img.data.shape, t_img.affine) * mask
            refined_out = None
            if args.refine:
                from tumsyn_bids.inference.refine import RefineSettings, synthesize_refined

                settings = RefineSettings(**{k: v for k, v in (("kappa", args.kappa), ("tau", args.tau))
                                             if v is not None})
                ref_res, _, info = synthesize_refined(
                    s_img.data, s_img.affine, s_img.mask, prompt, bundle, settings=settings,
                    source_prompt=None if args.unknown_source else s_img.prompt.text(),
                    voxel_size=(1.0, 1.0, 1.0), device="cpu", progress=False, window=args.window)
                refined_out = to_grid(ref_res.data, ref_res.affine, t_img.data.shape, t_img.affine) * mask
            same_grid = s_img.data.shape == t_img.data.shape and np.allclose(s_img.affine, t_img.affine)
            src_on_grid = s_img.data if same_grid else to_grid(s_img.data, s_img.affine, t_img.data.shape,
                                                               t_img.affine)
            candidates = {
                "model": model_out,
                "hist": hist_match(src_on_grid, reference, mask),
                "hist-inv": hist_match_inverted(src_on_grid, reference, mask),
                "lut": apply_lut(src_on_grid * mask, mask, luts[(_base(src), tgt)]),
            }
            if refined_out is not None:
                candidates["refined"] = refined_out
            for method, out in candidates.items():
                m = compare(out, reference, mask)
                rows.append({"subject": held, "task": f"{src}->{tgt}", "method": method,
                             "psnr_masked": m["masked"]["psnr"], "ssim_masked": m["masked"]["ssim"],
                             "psnr": m["whole"]["psnr"], "ssim": m["whole"]["ssim"]})
            print(f"{held} {src}->{tgt}: " + ", ".join(
                f"{r['method']} {r['psnr_masked']:.2f}/{r['ssim_masked']:.3f}" for r in rows[-len(candidates):]),
                file=sys.stderr)
    print_table(rows)
    print(f"\nmodel {bundle.name} sha256 {bundle.sha256[:12]}; field {args.field} T; held-out {args.held_out}; "
          f"spread {args.spread}; {'clean' if args.clean else 'noisy, biased'} sources; "
          f"crop {args.crop or 'none'}; synthesis {np.mean(synth_seconds or [np.nan]):.1f} s per image (engine, CPU); "
          f"total {time.time() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def _refined_psnr(names: tuple[str, ...], sims: dict, tgt: str, prompt, bundle, window) -> float:
    """Masked PSNR of the refined model reading ``names`` (the first is the reference source)."""
    from tumsyn_bids.evaluation import compare
    from tumsyn_bids.inference.refine import synthesize_refined

    ref, t_img = sims[names[0]], sims[tgt]
    extra = [(sims[n].data, sims[n].affine, sims[n].prompt.text()) for n in names[1:]]
    res, _, _ = synthesize_refined(ref.data, ref.affine, ref.mask, prompt, bundle, source_prompt=ref.prompt.text(),
                                   extra_sources=extra, voxel_size=(1.0, 1.0, 1.0), device="cpu", progress=False,
                                   window=window)
    out = to_grid(res.data, res.affine, t_img.data.shape, t_img.affine) * t_img.mask
    return compare(out, t_img.ground_truth, t_img.mask)["masked"]["psnr"]


def multi_rows(held: str, sims: dict, bundle, args) -> list[dict]:
    """Rows of the multi-source leave-one-out: 'multi' (refined, every source), 'single' (refined, the
    best single source of the set), 'hist' / 'hist-inv' (the best single-source oracle of each kind)."""
    from tumsyn_bids.contrasts import get_contrast
    from tumsyn_bids.evaluation import compare
    from tumsyn_bids.prompts import Prompt
    from tumsyn_bids.protocols import default_protocol

    rows = []
    for sources, tgt in MULTI_TASKS:
        t_img = sims[tgt]
        mask, reference = t_img.mask, t_img.ground_truth
        proto = default_protocol(tgt, args.field)
        prompt = Prompt(get_contrast(tgt).prompt_modality, (1.0, 1.0, 1.0), age=t_img.prompt.age,
                        sex=t_img.prompt.sex, field_strength=args.field, vendor=proto.vendor, tr_ms=proto.tr_ms,
                        te_ms=proto.te_ms, ti_ms=proto.ti_ms, flip_angle=proto.flip_angle)
        scores = {"multi": _refined_psnr(sources, sims, tgt, prompt, bundle, args.window),
                  "single": max(_refined_psnr((s,), sims, tgt, prompt, bundle, args.window) for s in sources)}
        for kind, fn in (("hist", hist_match), ("hist-inv", hist_match_inverted)):
            best = -np.inf
            for s in sources:
                src = to_grid(sims[s].data, sims[s].affine, t_img.data.shape, t_img.affine)
                best = max(best, compare(fn(src, reference, mask), reference, mask)["masked"]["psnr"])
            scores[kind] = best
        task = f"{'+'.join(sources)}->{tgt}"
        for method, value in scores.items():
            rows.append({"subject": held, "task": task, "method": method, "psnr_masked": value,
                         "ssim_masked": float("nan"), "psnr": float("nan"), "ssim": float("nan")})
        print(f"{held} {task}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()), file=sys.stderr)
    return rows


def print_table(rows: list[dict]) -> None:
    """Mean over subjects per task and method: masked PSNR/SSIM, then whole-volume PSNR/SSIM."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
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
