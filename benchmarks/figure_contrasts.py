"""Figure: one phantom simulated as T1w MPRAGE, T2w, FLAIR, PDw and T2*w at 3 T.

    python benchmarks/figure_contrasts.py [--labelmap PATH] [--out docs/figures/physics_contrasts.png]

Without ``--labelmap`` the nilearn MNI phantom is used. Nominal (mid-range) tissue values, no
noise, bias or deformation, so the figure shows the sequence equations' contrast alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelmap", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/physics_contrasts.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tumsyn_bids.physics import load_labelmap_phantom, mni_phantom, render, resolve_protocol
    from tumsyn_bids.physics.tissues import nominal_tissue_properties

    phantom = load_labelmap_phantom(args.labelmap) if args.labelmap else mni_phantom(1.0)
    props = nominal_tissue_properties(phantom, 3.0)
    contrasts = [("T1w", "T1w MPRAGE"), ("T2w", "T2w SPACE"), ("FLAIR", "FLAIR"), ("PDw", "PDw TSE"),
                 ("T2starw", "T2*w GRE")]
    fig, axes = plt.subplots(2, len(contrasts), figsize=(2.2 * len(contrasts), 4.6), dpi=90)
    import nibabel as nib

    canon = nib.as_closest_canonical(nib.Nifti1Image(phantom.brain_mask.astype(np.uint8), phantom.affine))
    mask = np.asarray(canon.dataobj) > 0
    centre = [int(np.mean(ix)) for ix in np.nonzero(mask)]
    for col, (name, title) in enumerate(contrasts):
        protocol = resolve_protocol(name, 3.0)
        image = render(phantom, props, protocol)
        image = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(image, phantom.affine)).dataobj)  # RAS
        image = image / np.percentile(image[mask], 99.5)
        for row, sl in enumerate((image[:, :, centre[2]], image[:, centre[1], :])):  # axial, coronal
            axes[row, col].imshow(sl.T, origin="lower", cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[row, col].set_axis_off()
        p = protocol
        ti = "" if p.ti_ms is None else f"/{p.ti_ms:g}"
        axes[0, col].set_title(f"{title}\n{p.tr_ms:g}/{p.te_ms:g}{ti} {p.flip_angle}", fontsize=8)
    fig.suptitle(f"3 T, {Path(phantom.source).name}", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.stem}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
