"""deepbet on the simulated demo heads: mask volume, the mask check and Dice with the phantom's brain.

Two sets, both made by the project's own simulator (the MNI phantom's head, physics/phantoms.py):

1. the demo dataset's T1w images (``bids_examples/demo``, or ``--demo DIR``), scored against
   ``derivatives/groundtruth`` brain masks;
2. ``tumsyn simulate`` outputs (default options, one subject, T1w) for ``--seeds`` seeds, scored
   against the brain mask the simulator writes beside them.

For every image: deepbet's mask (the app's skull-stripper, via ``anat.brainmask``), its volume,
the app's mask check (:func:`tumsyn_bids.anat.brainmask.mask_qc`: plausible volume for the voxel
size and share on the image's signal; the warning the README demo would print) and Dice with the
true intracranial mask. Prints one line per image and a summary; exits 1 when a mask fails the
check or scores Dice < 0.9 (``--min-dice``).

    python benchmarks/demo_heads.py                   # demo + 10 seeds at 1 mm (a few minutes on 2 cores)
    python benchmarks/demo_heads.py --voxel 2 --seeds 3
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def score(t1w: Path, truth: Path) -> dict:
    from tumsyn_bids.anat.brainmask import deepbet_mask, mask_qc

    img = nib.load(str(t1w))
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    start = time.perf_counter()
    mask = deepbet_mask(t1w)
    seconds = time.perf_counter() - start
    qc = mask_qc(mask, np.asarray(img.dataobj, dtype=np.float32), zooms, "deepbet")
    true = np.asarray(nib.load(str(truth)).dataobj) > 0
    dice = 2.0 * float((mask & true).sum()) / max(1.0, float(mask.sum() + true.sum()))
    true_ml = float(true.sum()) * float(np.prod(zooms)) / 1000.0
    return {"volume_ml": qc["VolumeML"], "true_ml": round(true_ml, 1), "dice": round(dice, 3),
            "inside": qc["InsideSupport"], "warning": qc["Warning"], "seconds": round(seconds, 1)}


def demo_pairs(demo: Path) -> list[tuple[str, Path, Path]]:
    pairs = []
    for t1w in sorted(demo.glob("sub-*/**/anat/*_T1w.nii.gz")):
        stem = t1w.name[: -len("_T1w.nii.gz")]
        truth = demo / "derivatives" / "groundtruth" / t1w.parent.relative_to(demo) / f"{stem}_desc-brain_mask.nii.gz"
        pairs.append((f"demo {t1w.name}", t1w, truth))
    return pairs


def simulated_pairs(out: Path, seed: int, voxel: float) -> list[tuple[str, Path, Path]]:
    """``tumsyn simulate`` (its default phantom, one subject) into ``out``."""
    exe = Path(sys.executable).parent / "tumsyn"
    cmd = [str(exe) if exe.is_file() else (shutil.which("tumsyn") or "tumsyn"), "simulate", str(out), "--subjects", "1",
           "--seed", str(seed), "--voxel", f"{voxel:g}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return [(f"simulate seed {seed}", out / "sub-01" / "anat" / "sub-01_T1w.nii.gz",
             out / "derivatives" / "groundtruth" / "sub-01" / "anat" / "sub-01_desc-brain_mask.nii.gz")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "bids_examples" / "demo")
    parser.add_argument("--seeds", type=int, default=10, help="tumsyn simulate seeds 0..N-1 (0: none)")
    parser.add_argument("--voxel", type=float, default=1.0, help="tumsyn simulate --voxel (its default: 1)")
    parser.add_argument("--min-dice", type=float, default=0.9)
    args = parser.parse_args(argv)

    rows = []
    pairs = demo_pairs(args.demo) if args.demo.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        for name, t1w, truth in pairs:
            rows.append((name, score(t1w, truth)))
            print(_line(*rows[-1]), flush=True)
        for seed in range(args.seeds):
            for name, t1w, truth in simulated_pairs(Path(tmp) / f"seed{seed}", seed, args.voxel):
                rows.append((name, score(t1w, truth)))
                print(_line(*rows[-1]), flush=True)
    if not rows:
        print("nothing measured")
        return 1
    dice = np.array([r["dice"] for _, r in rows])
    vol = np.array([r["volume_ml"] for _, r in rows])
    failed = [name for name, r in rows if r["warning"] or r["dice"] < args.min_dice]
    print(f"{len(rows)} images: deepbet volume {vol.min():.0f}-{vol.max():.0f} mL (mean {vol.mean():.0f}), "
          f"Dice mean {dice.mean():.3f} min {dice.min():.3f}; mask warnings "
          f"{sum(1 for _, r in rows if r['warning'])}; failing (warning or Dice < {args.min_dice:g}): "
          f"{', '.join(failed) or 'none'}")
    return 1 if failed else 0


def _line(name: str, r: dict) -> str:
    return (f"{name:34s} deepbet {r['volume_ml']:7.1f} mL (true {r['true_ml']:7.1f})  Dice {r['dice']:.3f}  "
            f"on signal {r['inside']:.3f}  {r['seconds']:5.1f} s  check: {r['warning'] or 'passed'}")


if __name__ == "__main__":
    sys.exit(main())
