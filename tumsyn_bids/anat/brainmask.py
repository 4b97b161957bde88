"""Brain masks: detect already-stripped input, deepbet for T1w, T1w-mask transfer, template fallback.

Nothing here downloads: deepbet's weights are in its wheel; the template comes from a local
TEMPLATEFLOW_HOME when it holds MNI152NLin2009cAsym, else from the MNI152 2009 template that ships
inside the nilearn wheel.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from tumsyn_bids.errors import DataError

LOGGER = logging.getLogger("tumsyn.brainmask")

T1W_LIKE: frozenset[str] = frozenset({"T1w", "T1CE", "MPRAGE"})
MAX_BRAIN_ML = 2300.0  # a whole head is ~3.5-5 L; brain + CSF inside the skull ~1.1-1.9 L
MIN_BACKGROUND_FRACTION = 0.25

# Skull-strip method labels recorded in sidecars.
ALREADY = "already-skull-stripped"
DEEPBET = "deepbet"
T1W_TRANSFER = "t1w-mask-rigid-antspyx"
TEMPLATE = "template-registration-antspyx"


@dataclass(frozen=True)
class MaskResult:
    method: str  # one of the labels above
    detail: str  # human-readable provenance (template name/path, reference image, ...)
    volume_ml: float


def foreground(data: np.ndarray) -> np.ndarray:
    """Voxels differing from the constant background value (the minimum)."""
    return data > data.min()


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask``, holes filled."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == sizes.argmax())


def looks_skull_stripped(data: np.ndarray, zooms: tuple[float, float, float]) -> bool:
    """Heuristic for ``--skull-strip auto``: a constant background around one brain-sized blob.

    Skull-stripped images have an exactly constant (usually zero) background covering a large
    part of the field of view, one connected foreground, and a foreground volume no larger than
    an intracranial volume; a whole-head image fails at least one of these (noise in the air,
    or a head-sized foreground).
    """
    fg = foreground(data)
    n_fg = int(fg.sum())
    if n_fg == 0:
        return False
    if 1.0 - n_fg / fg.size < MIN_BACKGROUND_FRACTION:
        return False
    main = largest_component(fg)
    if (main & fg).sum() < 0.95 * n_fg:
        return False
    volume_ml = n_fg * float(np.prod(zooms)) / 1000.0
    return volume_ml <= MAX_BRAIN_ML


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Mask of an already skull-stripped image."""
    return largest_component(foreground(data))


def deepbet_mask(in_file: str | Path) -> np.ndarray:
    """deepbet brain mask (CPU) on ``in_file``'s own grid."""
    import torch

    from deepbet import BrainExtraction

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    img = nib.load(str(in_file))
    _, mask_img, _ = BrainExtraction(no_gpu=True).run(img)
    return np.asarray(mask_img.dataobj) > 0


def template_files() -> tuple[Path, Path, str]:
    """(template T1w, its brain mask, description) from TEMPLATEFLOW_HOME or nilearn's wheel."""
    home = os.environ.get("TEMPLATEFLOW_HOME")
    if home:
        tpl = Path(home) / "tpl-MNI152NLin2009cAsym"
        for res in ("02", "01"):
            t1 = tpl / f"tpl-MNI152NLin2009cAsym_res-{res}_T1w.nii.gz"
            mask = tpl / f"tpl-MNI152NLin2009cAsym_res-{res}_desc-brain_mask.nii.gz"
            if t1.is_file() and mask.is_file() and t1.stat().st_size > 0 and mask.stat().st_size > 0:
                return t1, mask, f"TemplateFlow MNI152NLin2009cAsym res-{res} ({tpl})"
    return (*nilearn_template(), "nilearn MNI152 2009a symmetric (brain-only template, GM+WM>0.2 mask)")


def nilearn_template() -> tuple[Path, Path]:
    """The MNI152 T1 template in nilearn's wheel and a brain mask made from its GM/WM maps.

    The mask is written once into a cache directory next to the user's home
    (``$TUMSYN_CACHE`` or ``~/.cache/tumsyn``).
    """
    import nilearn

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    t1 = data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    cache = Path(os.environ.get("TUMSYN_CACHE", Path.home() / ".cache" / "tumsyn"))
    mask_path = cache / "mni_icbm152_09a_brain_mask.nii.gz"
    if not mask_path.is_file():
        from tumsyn_bids.bids.derivatives import atomic_save_nifti

        gm = nib.load(str(data / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"))
        wm = np.asarray(nib.load(str(data / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")).dataobj)
        brain = largest_component((np.asarray(gm.dataobj) + wm) > 0.2)
        brain = ndimage.binary_closing(brain, iterations=2)
        atomic_save_nifti(nib.Nifti1Image(brain.astype(np.uint8), gm.affine), mask_path)
    return t1, mask_path


def transfer_mask(fixed: str | Path, moving: str | Path, moving_mask: str | Path,
                  transform: str = "Rigid") -> np.ndarray:
    """Register ``moving`` to ``fixed`` and carry ``moving_mask`` along (nearest neighbour)."""
    from tumsyn_bids.anat.registration import rigid_resample

    (moved,) = rigid_resample(fixed, moving, images=(moving_mask,), interpolators=("nearestNeighbor",),
                              type_of_transform=transform)
    return moved > 0.5


def compute_mask(in_file: str | Path, out_file: str | Path, *, mode: str = "auto", suffix: str = "T1w",
                 t1w_file: str | Path | None = None, t1w_mask: str | Path | None = None) -> MaskResult:
    """Brain mask of ``in_file`` written to ``out_file`` (uint8, same grid); returns the method.

    ``mode``: ``auto`` (detect stripped input, else strip), ``on`` (always strip) or ``off``
    (the input is already stripped: mask = its foreground).
    """
    img = nib.load(str(in_file))
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if mode not in {"auto", "on", "off"}:
        raise ValueError(f"unknown skull-strip mode {mode!r}")
    if mode == "off" or (mode == "auto" and looks_skull_stripped(data, zooms)):
        mask, method, detail = nonzero_mask(data), ALREADY, f"input foreground (--skull-strip {mode})"
    elif suffix in T1W_LIKE:
        mask, method, detail = deepbet_mask(in_file), DEEPBET, "deepbet (T1w-trained CNN, weights in its wheel)"
    elif t1w_file is not None and t1w_mask is not None:
        mask = transfer_mask(in_file, t1w_file, t1w_mask)
        method, detail = T1W_TRANSFER, f"brain mask of {Path(t1w_file).name} registered rigidly"
    else:
        tpl, tpl_mask, desc = template_files()
        mask = transfer_mask(in_file, tpl, tpl_mask, transform="Affine")
        method, detail = TEMPLATE, desc
    if not mask.any():
        raise DataError(f"brain mask is empty (method {method})", path=in_file)
    out = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    out.header.set_xyzt_units("mm", "sec")
    nib.save(out, str(out_file))
    volume_ml = float(mask.sum()) * float(np.prod(zooms)) / 1000.0
    return MaskResult(method, detail, round(volume_ml, 1))
