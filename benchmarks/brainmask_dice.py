"""Brain-mask methods on non-T1w sources: Dice against the simulator's true mask, per contrast.

Whole-head T2w, FLAIR and PDw images (bias, Rician noise, random deformation) are simulated from
label maps together with a T1w of the same subject in another head position (a second session
pose, so the T1w mask must really be registered). Each image is conformed as the app does (RAS+,
float32) and masked by every method of tumsyn_bids.anat.brainmask:

  deepbet     deepbet (a T1w-trained CNN) on the image itself
  deepbet-inverted  deepbet on the image with its contrast turned over inside the head
                    (brainmask.inverted_image: CSF dark, white matter bright, as in a T1w)
  t1w-rigid   deepbet on the session's T1w, carried onto the image by rigid registration (antspyx)
  template    the MNI152 brain mask carried by affine registration of the template T1w (antspyx)

and scored by Dice with the true intracranial mask (brain + CSF, as the simulator defines it).
The mask QC numbers (volume, SupportDice, InsideSupport, warning) are printed beside each score,
so the thresholds of brainmask.mask_qc can be checked against good and bad masks.

    python benchmarks/brainmask_dice.py --labelmaps /work/shared/data/labelmaps --n 3 [--voxel 2]

``--mni`` adds the MNI phantom (nilearn's GM/WM maps, no files needed). Prints one row per
(subject, contrast, method) and a summary table of mean (min) Dice per contrast and method.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONTRASTS = ["T2w", "FLAIR", "PDw"]
METHODS = ["deepbet", "deepbet-inverted", "t1w-rigid", "template"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


def conformed(image, path: Path):
    """Write a simulated image as the app's conform step would (RAS+ float32); return (path, mask)."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.Nifti1Image(image.data, image.affine))
    truth = nib.as_closest_canonical(nib.Nifti1Image(image.mask.astype(np.uint8), image.affine))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine), str(path))
    return path, np.asarray(truth.dataobj) > 0


def phantoms(args):
    from tumsyn_bids.physics.phantoms import load_labelmap_phantom, mni_phantom

    maps = sorted(Path(args.labelmaps).glob("synthseg_training_seg_*.nii.gz"))[: args.n] if args.labelmaps else []
    for path in maps:
        yield path.name.split(".")[0], load_labelmap_phantom(path)
    if args.mni:
        yield "mni", mni_phantom(1.0)


def run(args) -> list[dict]:
    import nibabel as nib

    from tumsyn_bids.anat import brainmask as bm
    from tumsyn_bids.physics.realism import random_rigid
    from tumsyn_bids.physics.simulate import draw_subject, simulate_subject

    rows = []
    rng = np.random.default_rng(args.seed)
    tpl, tpl_mask, _ = bm.template_files()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, phantom in phantoms(args):
            draw = draw_subject(phantom, 3.0, rng)
            centre = phantom.affine @ np.append((np.asarray(phantom.shape) - 1) / 2.0, 1.0)
            t1 = simulate_subject(phantom, ["T1w"], rng, voxel_size=args.voxel, subject=draw,
                                  pose=random_rigid(rng, centre[:3], rotation_deg=8.0, translation_mm=6.0))["T1w"]
            others = simulate_subject(phantom, CONTRASTS, rng, voxel_size=args.voxel, subject=draw)
            t1_path, _ = conformed(t1, tmp / f"{name}_T1w.nii.gz")
            start = time.perf_counter()
            t1_mask = bm.deepbet_mask(t1_path)
            t1_mask_path = tmp / f"{name}_T1w_mask.nii.gz"
            nib.save(nib.Nifti1Image(t1_mask.astype(np.uint8), nib.load(str(t1_path)).affine), str(t1_mask_path))
            t1_seconds = time.perf_counter() - start
            for contrast in CONTRASTS:
                path, truth = conformed(others[contrast], tmp / f"{name}_{contrast}.nii.gz")
                img = nib.load(str(path))
                data = np.asarray(img.dataobj, dtype=np.float32)
                zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
                for method in METHODS:
                    start = time.perf_counter()
                    if method == "deepbet":
                        mask = bm.deepbet_mask(path)
                    elif method == "deepbet-inverted":
                        mask = bm.deepbet_inverted_mask(path)
                    elif method == "t1w-rigid":
                        mask = bm.transfer_mask(path, t1_path, t1_mask_path)
                    else:
                        mask = bm.transfer_mask(path, tpl, tpl_mask, transform="Affine")
                    seconds = time.perf_counter() - start + (t1_seconds if method == "t1w-rigid" else 0.0)
                    qc = bm.mask_qc(mask, data, zooms, method)
                    row = {"subject": name, "contrast": contrast, "method": method, "dice": round(dice(mask, truth), 4),
                           "true_ml": round(float(truth.sum()) * float(np.prod(zooms)) / 1000, 1),
                           "seconds": round(seconds, 1), **qc}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    lines = ["", "Dice with the true intracranial mask: mean (min) over subjects; QC warnings raised",
             f"{'contrast':8s} " + " ".join(f"{m:>28s}" for m in METHODS)]
    for contrast in CONTRASTS:
        cells = []
        for method in METHODS:
            sel = [r for r in rows if r["contrast"] == contrast and r["method"] == method]
            if not sel:
                cells.append(f"{'-':>28s}")
                continue
            d = [r["dice"] for r in sel]
            warned = sum(r["Warning"] is not None for r in sel)
            cells.append(f"{np.mean(d):>11.3f} ({min(d):.3f}) warn {warned}/{len(sel)}")
        lines.append(f"{contrast:8s} " + " ".join(cells))
    best = {c: max(METHODS, key=lambda m: np.mean([r["dice"] for r in rows if r["contrast"] == c and r["method"] == m]
                                                  or [-1])) for c in CONTRASTS}
    lines.append("best by mean Dice: " + ", ".join(f"{c}: {m}" for c, m in best.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelmaps", help="folder with synthseg_training_seg_*.nii.gz label maps")
    parser.add_argument("--n", type=int, default=3, help="label maps to use (default 3)")
    parser.add_argument("--mni", action="store_true", help="add the MNI phantom (no files needed)")
    parser.add_argument("--voxel", type=float, default=2.0, help="isotropic voxel size in mm (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not args.labelmaps and not args.mni:
        parser.error("give --labelmaps DIR and/or --mni")
    rows = run(args)
    print(summary(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
