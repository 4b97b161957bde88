"""PNG figures for the reports (matplotlib, Agg backend, imported lazily).

Every panel shows the same world point in three planes (axial, coronal, sagittal), so images on
different grids (a 1 mm source, a 2 mm synthetic) line up row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tumsyn_bids.bids.derivatives import atomic_write

PLANES = ("axial", "coronal", "sagittal")


@dataclass(frozen=True)
class Panel:
    """One row of a figure: an image, its title, and optionally a mask drawn as a contour."""

    image: str | Path
    title: str
    mask: str | Path | None = None


def _canonical(path: str | Path) -> nib.Nifti1Image:
    img = nib.load(str(path))
    if img.ndim == 4:
        img = img.slicer[..., 0]
    return nib.as_closest_canonical(img)


def _slices(img: nib.Nifti1Image, world: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Axial, coronal and sagittal slices through ``world`` with their display aspect."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    ijk = np.round(np.linalg.solve(img.affine, np.append(world, 1.0))[:3]).astype(int)
    ijk = np.clip(ijk, 0, np.array(data.shape) - 1)
    zx, zy, zz = img.header.get_zooms()[:3]
    return [
        (data[:, :, ijk[2]].T, zy / zx),  # axial: x across, y up
        (data[:, ijk[1], :].T, zz / zx),  # coronal: x across, z up
        (data[ijk[0], :, :].T, zz / zy),  # sagittal: y across, z up
    ]


def centre_of(path: str | Path) -> np.ndarray:
    """World coordinates of the centre of mass of an image's foreground (or mask)."""
    from scipy import ndimage

    img = _canonical(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    fg = data > data.min()
    centre = ndimage.center_of_mass(fg) if fg.any() else (np.array(data.shape) - 1) / 2.0
    return (img.affine @ np.append(np.asarray(centre, dtype=float), 1.0))[:3]


def plot_panels(panels: Sequence[Panel], out_png: str | Path, *, centre: str | Path | None = None,
                suptitle: str | None = None) -> Path:
    """Write a rows x 3 planes figure of ``panels`` to ``out_png`` (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    world = centre_of(centre if centre is not None else (panels[0].mask or panels[0].image))
    fig, axes = plt.subplots(len(panels), 3, figsize=(9, 3.1 * len(panels)), squeeze=False,
                             facecolor="black")
    for row, panel in enumerate(panels):
        img = _canonical(panel.image)
        data = np.asarray(img.dataobj, dtype=np.float32)
        values = data[data != 0]  # background is exactly zero after masking
        vmin, vmax = (np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0))
        if vmax <= vmin:
            vmax = vmin + 1.0
        mask_slices = _slices(_canonical(panel.mask), world) if panel.mask is not None else None
        for col, (plane, (sl, aspect)) in enumerate(zip(PLANES, _slices(img, world))):
            ax = axes[row][col]
            ax.imshow(sl, cmap="gray", origin="lower", vmin=float(vmin), vmax=float(vmax), aspect=aspect,
                      interpolation="nearest")
            if mask_slices is not None:
                msl, _ = mask_slices[col]
                if msl.shape == sl.shape and np.any(msl > 0) and not np.all(msl > 0):
                    ax.contour((msl > 0).astype(float), levels=[0.5], colors="#ff4040", linewidths=0.8)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(plane, color="white", fontsize=9)
        axes[row][0].text(0.01, 0.99, panel.title, color="#ffd24d", fontsize=9, va="top", ha="left",
                          transform=axes[row][0].transAxes)
    if suptitle:
        fig.suptitle(suptitle, color="white", fontsize=10)
    fig.tight_layout()

    def _save(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=80, facecolor="black")

    try:
        atomic_write(out_png, _save)
    finally:
        plt.close(fig)
    return Path(out_png)
