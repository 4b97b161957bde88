"""Speed: simulate one 1 mm 256^3 subject in one contrast (deformation, bias, noise, mask).

    python benchmarks/simulate.py [--threads 2] [--contrast T1w] [--labelmap PATH] [--repeats 3]

Default phantom: the nilearn MNI head at 1 mm padded to 256^3 (no data needed). Phantom
construction is not timed (it is cached in a training process); the printed time covers
tissue draw, rendering, deformation/resampling, mask, bias field and Rician noise.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contrast", default="T1w")
    parser.add_argument("--labelmap", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np

    from tumsyn_bids.physics import load_labelmap_phantom, mni_phantom, pad_phantom, simulate_image

    t0 = time.perf_counter()
    phantom = load_labelmap_phantom(args.labelmap) if args.labelmap else mni_phantom(1.0)
    phantom = pad_phantom(phantom, (256, 256, 256))
    print(f"phantom {phantom.source}: {phantom.shape}, {len(phantom.classes)} classes, "
          f"built in {time.perf_counter() - t0:.1f} s (not timed below)")
    times = []
    for seed in range(args.repeats):
        t = time.perf_counter()
        img = simulate_image(phantom, args.contrast, np.random.default_rng(seed), voxel_size=1.0, crop=False)
        times.append(time.perf_counter() - t)
        print(f"  seed {seed}: {times[-1]:.2f} s, output {img.data.shape}")
    print(f"simulate_image 1 mm 256^3 {args.contrast}, {args.threads} threads: "
          f"median {sorted(times)[len(times) // 2]:.2f} s (min {min(times):.2f} s)")


if __name__ == "__main__":
    main()
