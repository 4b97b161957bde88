"""SVG reportlets in the nipreps style, drawn with niworkflows' visualisation utilities.

Each reportlet is a standalone SVG under ``sub-X/figures/`` (the place fMRIPrep and sMRIPrep use):
mosaics of slices along the three axes (cut across the whole brain mask, so every image of one
output is cut at the same world positions), a red contour of the brain mask, and
"flickers" (niworkflows' ``compose_view``: two images stacked, hovering alternates them).

niworkflows, nilearn and svgutils are imported inside the functions only: importing this module
costs nothing, and the CLI never pays niworkflows' import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from tumsyn_bids.atomic import atomic_write
from tumsyn_bids.bids.derivatives import reportlet_relpath  # the one place output paths are named

LOGGER = logging.getLogger("tumsyn.reports")

N_CUTS = 7  # slices per axis, as in niworkflows' segmentation mosaics
# One figure per image: the three axes as rows of one nilearn mosaic (axial, coronal, sagittal),
# a third of the drawing time of one figure per axis (niworkflows' ``("z", "x", "y")``).
ORDER = ("mosaic",)
DPI = 90  # raster inside the SVGs: a 7-slice row is ~1400 px wide, more than a report page shows
PERCENTILES = (1.0, 99.5)  # display range from the nonzero voxels of each image
CONTOUR = "r"
KINDS = ("mask", "source", "acquired", "maps")


def mosaic_cuts(mask_file: str | Path | nib.spatialimages.SpatialImage, n_cuts: int = N_CUTS
                ) -> dict[str, list[float]]:
    """World coordinates of ``n_cuts`` evenly spaced slices per axis across the whole mask.

    Slices sit at the centres of ``n_cuts`` equal bands of the mask's extent, so the mosaics reach
    the cerebellum and the vertex. (niworkflows' ``cuts_from_bbox`` keeps only planes that the mask
    fills by 10-30%, which leaves the lowest and highest axial quarter of a brain unseen.)
    """
    img = mask_file if isinstance(mask_file, nib.spatialimages.SpatialImage) else nib.load(str(mask_file))
    img = nib.as_closest_canonical(_3d(img))  # voxel axes i, j, k along x, y, z
    data = np.asarray(img.dataobj) > 0
    if not data.any():
        data = np.ones(data.shape, dtype=bool)
    centre = np.argwhere(data).mean(axis=0)
    cuts = {}
    for ax, name in enumerate(("x", "y", "z")):
        present = np.flatnonzero(data.any(axis=tuple(a for a in range(3) if a != ax)))
        lo, hi = float(present.min()), float(present.max())
        centres = lo + (np.arange(n_cuts) + 0.5) * (hi - lo) / n_cuts
        vox = np.ones((4, n_cuts))
        vox[:3] = centre[:, None]
        vox[ax] = centres
        cuts[name] = [round(float(c), 2) for c in (img.affine @ vox)[ax]]
    return cuts


def _viz() -> Any:
    """``niworkflows.viz.utils``, without its notice that the plots move to nireports one day."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        from niworkflows.viz import utils
    return utils


def _3d(img: Any) -> nib.Nifti1Image:
    if len(img.shape) > 3:
        img = img.slicer[..., 0]
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)


def _load(image: str | Path | nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    return _3d(image if isinstance(image, nib.spatialimages.SpatialImage) else nib.load(str(image)))


def display_range(img: nib.Nifti1Image, mask: nib.Nifti1Image | None = None,
                  percentiles: tuple[float, float] = PERCENTILES) -> dict[str, float]:
    """``vmin``/``vmax`` from robust percentiles (niworkflows' helper) of the nonzero voxels in ``mask``.

    Inside the brain mask when one is given, so bright scalp fat does not squash the brain's contrast.
    """
    robust_set_limits = _viz().robust_set_limits
    data = np.asarray(img.dataobj, dtype=np.float32)
    keep = np.isfinite(data) & (data != 0)
    if mask is not None:
        inside = _on_grid(mask, img) > 0
        if np.any(keep & inside):
            keep &= inside
    values = data[keep]
    if values.size == 0:
        return {"vmin": 0.0, "vmax": 1.0}
    limits = robust_set_limits(values, {}, percentiles=percentiles)
    vmin, vmax = float(limits["vmin"]), float(limits["vmax"])
    return {"vmin": vmin, "vmax": vmax if vmax > vmin else vmin + 1.0}


def _on_grid(mask: nib.Nifti1Image, img: nib.Nifti1Image) -> np.ndarray:
    """``mask`` as an array on ``img``'s grid (nearest neighbour when the grids differ)."""
    if mask.shape[:3] == img.shape[:3] and np.allclose(mask.affine, img.affine, atol=1e-3):
        return np.asarray(mask.dataobj)
    from nilearn.image import resample_to_img

    return np.asarray(resample_to_img(mask, img, interpolation="nearest", force_resample=True,
                                      copy_header=True).dataobj)


def mosaic_panels(image: str | Path | nib.Nifti1Image, cuts: Mapping[str, Sequence[float]], *, div_id: str,
                  label: str | None = None, contour: str | Path | nib.Nifti1Image | None = None,
                  plot_params: Mapping[str, Any] | None = None, order: Sequence[str] = ORDER,
                  dpi: int | None = None) -> list[Any]:
    """One nilearn mosaic per axis as svgutils figures, ready for ``compose_view``.

    ``order=("mosaic",)`` (the default) draws the three axes as rows of one figure (a third of the
    drawing time); ``order=("z", "x", "y")`` draws one figure per axis.

    niworkflows' ``plot_registration`` with a resolution knob (it always rasterises at 300 dpi,
    about ten times the pixels, and time, that a 2 mm image needs).
    """
    from nilearn.plotting import plot_anat
    from svgutils.transform import fromstring

    extract_svg = _viz().extract_svg

    img = _load(image)
    mask = _load(contour) if contour is not None else None
    params = {**display_range(img, mask), "colorbar": False, **(plot_params or {})}
    draw_contour = mask is not None and bool(np.any(np.asarray(mask.dataobj) > 0))
    panels = []
    for i, mode in enumerate(order):
        coords = ({axis: np.asarray(cuts[axis]) for axis in "xyz"} if mode == "mosaic"  # all three axes
                  else list(cuts[mode]))
        display = plot_anat(img, display_mode=mode, cut_coords=coords, title=label if i == 0 else None, **params)
        if draw_contour:
            display.add_contours(mask, colors=CONTOUR, levels=[0.5], linewidths=1.0)
        svg = extract_svg(display, dpi=dpi or DPI, compress=False)
        display.close()
        panels.append(fromstring(svg.replace("figure_1", f"{div_id}-{mode}", 1)))
    return panels


def _compose(bg: list[Any], fg: list[Any] | None, out_svg: str | Path) -> Path:
    """niworkflows' ``compose_view`` written atomically (a flicker when ``fg`` is given)."""
    compose_view = _viz().compose_view
    return atomic_write(out_svg, lambda tmp: compose_view(bg, fg, out_file=str(tmp)))


def plot_mask(source: str | Path, mask: str | Path, out_svg: str | Path, *,
              cuts: Mapping[str, Sequence[float]] | None = None, label: str | None = None) -> Path:
    """Source image with the brain-mask contour, three axes (sMRIPrep's brain-mask reportlet)."""
    cuts = cuts or mosaic_cuts(mask)
    return _compose(mosaic_panels(source, cuts, div_id="mask", label=label, contour=mask), None, out_svg)


def plot_flicker(reference: str | Path | nib.Nifti1Image, image: str | Path | nib.Nifti1Image,
                 out_svg: str | Path, *, cuts: Mapping[str, Sequence[float]],
                 reference_label: str, image_label: str,
                 contour: str | Path | nib.Nifti1Image | None = None) -> Path:
    """A flicker: ``image`` shown, ``reference`` under it; hovering alternates them at the same cuts.

    The same ``contour`` (the brain mask) is drawn on both, so a shift of anatomy between the two
    images shows as a jump against a fixed line.
    """
    bg = mosaic_panels(reference, cuts, div_id="reference", label=reference_label, contour=contour)
    fg = mosaic_panels(image, cuts, div_id="image", label=image_label, contour=contour)
    return _compose(bg, fg, out_svg)


def plot_maps(maps: Mapping[str, str | Path], out_svg: str | Path, *, cuts: Mapping[str, Sequence[float]],
              units: Mapping[str, str] | None = None) -> Path:
    """Predicted tissue-parameter maps stacked: one figure each, axial/coronal/sagittal rows, colour bar."""
    units = units or {}
    panels: list[Any] = []
    for name, path in maps.items():
        unit = units.get(name)
        label = f"{name} ({unit}), model estimate" if unit else f"{name}, model estimate"
        panels += mosaic_panels(path, cuts, div_id=f"map{name}", label=label, order=("mosaic",),
                                plot_params={"colorbar": True, "cmap": "gray"})
    return _compose(panels, None, out_svg)


def masked_like(image: str | Path, reference: str | Path) -> nib.Nifti1Image:
    """``image`` zeroed where ``reference`` (same grid) is zero: like with like in a flicker."""
    img, ref = _load(image), _load(reference)
    data = np.asarray(img.dataobj, dtype=np.float32)
    ref_data = np.asarray(ref.dataobj)
    if ref_data.shape != data.shape:
        return img
    return nib.Nifti1Image(np.where(ref_data != 0, data, 0).astype(np.float32), img.affine)


def _fresh(out_svg: Path, *inputs: str | Path) -> bool:
    """``out_svg`` exists and is newer than every input (another output of the source drew it)."""
    try:
        made = out_svg.stat().st_mtime
        return all(Path(p).stat().st_mtime <= made for p in inputs)
    except OSError:
        return False


def write_reportlets(*, out_dir: str | Path, source_file: str | Path, target: str,
                     written: Mapping[str, str], real_registered: str | Path | None = None,
                     synth_file: str | Path | None = None, n_cuts: int = N_CUTS,
                     extra_registered: Sequence[str | Path] = (), extra_names: Sequence[str] = ()
                     ) -> dict[str, str]:
    """Draw the reportlets of one synthetic output into ``out_dir/sub-X/figures``; return {kind: path}.

    ``written`` is what the derivatives writer returned (``image``, ``mask``, ``map_<name>``...).
    ``real_registered`` (the acquired target image after the QC registration, brain only, on the
    synthesis grid of ``synth_file``) adds the acquired <-> synthetic flicker. ``extra_registered``
    (multi-source: each further source after its registration, on the conformed source grid; raw names
    in ``extra_names``) adds one source <-> further-source flicker each (kind ``coreg2``, ``coreg3``...,
    numbered as in the sidecar's ``SynthesisSources``). A reportlet that
    cannot be drawn is logged and left out (the report says so); it never costs the outputs.
    """
    from tumsyn_bids.bids.derivatives import TISSUE_MAPS

    out_dir = Path(out_dir)
    image, mask = Path(written["image"]), Path(written["mask"])
    image_rel = image.relative_to(out_dir)
    source_name = Path(source_file).name
    out: dict[str, str] = {}

    def draw(kind: str, func, *args, **kwargs) -> None:
        path = out_dir / reportlet_relpath(image_rel if kind != "mask" else mask.relative_to(out_dir), kind)
        try:
            out[kind] = str(func(*args, path, **kwargs))
        except Exception as exc:  # a figure must never cost the outputs
            LOGGER.warning("%s: could not draw the %s reportlet (%s: %s)", image, kind, type(exc).__name__, exc)

    try:
        cuts = mosaic_cuts(mask, n_cuts)
    except Exception as exc:
        LOGGER.warning("%s: no reportlets (cannot read the brain mask %s: %s)", image, mask, exc)
        return out
    mask_svg = out_dir / reportlet_relpath(mask.relative_to(out_dir), "mask")
    if _fresh(mask_svg, mask, source_file):
        out["mask"] = str(mask_svg)
    else:
        draw("mask", plot_mask, source_file, mask, cuts=cuts, label=f"source: {source_name}")
    draw("source", plot_flicker, source_file, image, cuts=cuts, reference_label=f"source: {source_name}",
         image_label=f"synthetic {target}", contour=mask)
    if real_registered and synth_file:
        draw("acquired", plot_flicker, real_registered, masked_like(synth_file, real_registered), cuts=cuts,
             reference_label=f"acquired {target} (registered, brain)", image_label=f"synthetic {target} (brain)",
             contour=mask)
    for number, (moved, name) in enumerate(zip(extra_registered, extra_names, strict=True), 2):
        draw(f"coreg{number}", plot_flicker, source_file, moved, cuts=cuts, reference_label=f"source: {source_name}",
             image_label=f"{name} (registered)", contour=mask)
    maps = {name: written[f"map_{name}"] for name in TISSUE_MAPS if f"map_{name}" in written}
    if maps:
        draw("maps", plot_maps, maps, cuts=cuts, units={k: v[1] for k, v in TISSUE_MAPS.items()})
    return out
