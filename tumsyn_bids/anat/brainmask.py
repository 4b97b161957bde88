"""Brain masks: detect already-stripped input, deepbet for T1w, T1w-mask transfer, template fallback.

Nothing here downloads: deepbet's weights are in its wheel; the template comes from a local
TEMPLATEFLOW_HOME when it holds MNI152NLin2009cAsym, else from the MNI152 2009 template that ships
inside the nilearn wheel.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
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
DEEPBET_INVERTED = "deepbet-inverted-contrast"
T1W_TRANSFER = "t1w-mask-rigid-antspyx"
TEMPLATE = "template-registration-antspyx"


@dataclass(frozen=True)
class MaskResult:
    method: str  # one of the labels above
    detail: str  # human-readable provenance (template name/path, reference image, ...)
    volume_ml: float
    qc: dict = field(default_factory=dict)  # mask_qc() of the mask kept (+ "Rejected": masks that failed it)


# Methods tried for a whole-head source, best first: the first whose mask passes mask_qc is kept
# (else the first, with its warning). Ordered by mean Dice with the true intracranial mask on
# simulated whole-head images (benchmarks/brainmask_dice.py: 3 SynthSeg label-map subjects, 2 mm,
# bias + noise, T1w in another head position; README "Brain masks"), mean (min):
#   contrast  t1w-rigid      deepbet        deepbet-inverted  template
#   T2w       0.927 (0.891)  0.683 (0.486)  0.906 (0.823)     0.580 (0.485)
#   FLAIR     0.927 (0.890)  0.841 (0.704)  0.800 (0.552)     0.573 (0.483)
#   PDw       0.927 (0.891)  0.856 (0.750)  0.730 (0.656)     0.576 (0.489)
# With the QC fallback and no T1w: T2w 0.906 (0.823), FLAIR 0.916 (0.855), PDw 0.856 (0.750).
# deepbet is trained on T1w: on T2w it takes the bright scalp and CSF (3.2 L); the brain-only MNI
# template registered onto a whole head grows to the head (about 4 L). T1W_TRANSFER needs a T1w of
# the same session (its deepbet mask is computed anyway); without one the next method is used.
T1W_ORDER: tuple[str, ...] = (DEEPBET, TEMPLATE)
DEFAULT_ORDER: tuple[str, ...] = (T1W_TRANSFER, DEEPBET, DEEPBET_INVERTED, TEMPLATE)
METHOD_ORDER: dict[str, tuple[str, ...]] = {
    "T2w": (T1W_TRANSFER, DEEPBET_INVERTED, DEEPBET, TEMPLATE),
    "FLAIR": (T1W_TRANSFER, DEEPBET, DEEPBET_INVERTED, TEMPLATE),
    "PDw": (T1W_TRANSFER, DEEPBET, DEEPBET_INVERTED, TEMPLATE),
}


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


def image_support(data: np.ndarray) -> np.ndarray:
    """Where the image has signal: the head (or the brain of a stripped image), holes filled.

    A constant (e.g. zero) background gives the foreground directly; otherwise voxels above half
    of Otsu's threshold (background noise vs tissue), largest component, holes filled in 3D and
    slice by slice (dark skull and air sinuses inside the head count as support).
    """
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    lowest = float(data.min())
    fg = data > lowest
    if 1.0 - fg.mean() >= MIN_BACKGROUND_FRACTION and not fg.all():
        candidate = largest_component(fg)
        if candidate.sum() >= 0.95 * fg.sum():  # an exactly constant background: a stripped image
            return candidate
    from skimage.filters import threshold_otsu

    values = data[fg]
    if values.size < 2 or float(values.max()) == float(values.min()):
        return fg
    threshold = lowest + 0.5 * (float(threshold_otsu(values)) - lowest)
    support = largest_component(data > threshold)
    for axis in range(3):  # an open neck or FOV edge leaves 3D holes open: fill them per slice too
        moved = np.moveaxis(support, axis, 0)  # a view: filled in place
        for i in range(moved.shape[0]):
            moved[i] = ndimage.binary_fill_holes(moved[i])
    return support


MIN_BRAIN_ML = 700.0  # below any adult intracranial volume (about 1.1-1.9 L)
MIN_INSIDE_SUPPORT = 0.85  # good masks on simulated FLAIR without scalp: 0.91-0.92 (dark CSF at the edge)


def plausible_volume_ml(zooms, support_ml: float) -> tuple[float, float]:
    """(low, high) mL for a brain mask with CSF: adult intracranial volumes are about 1.1-1.9 L.

    High: 2.1 L plus 100 mL per mm of mean voxel size (the partial-volume shell a coarse grid adds:
    2.2 L at 1 mm, 2.5 L at 4 mm). Low: 700 mL, or half the head when the field of view holds
    less than 1.4 L of signal (partial coverage).
    """
    high = 2100.0 + 100.0 * float(np.mean(np.asarray(zooms, dtype=float)))
    return min(MIN_BRAIN_ML, 0.5 * float(support_ml)), high


def mask_qc(mask: np.ndarray, data: np.ndarray, zooms, method: str) -> dict:
    """Sanity numbers of a brain mask, recorded as ``MaskQC`` in the mask's sidecar.

    ``VolumeML``: the mask's volume, within :func:`plausible_volume_ml` for the voxel size.
    ``SupportDice``: Dice between the mask and the image's own support (:func:`image_support`:
    about 0.5 for a good mask on a whole-head image, about 1 on a skull-stripped one).
    ``InsideSupport``: the fraction of the mask on the image's support (a brain mask reaching into the
    air is wrong); at least ``MIN_INSIDE_SUPPORT``.
    ``Warning``: one sentence when a check fails, else None.
    """
    mask = np.asarray(mask, dtype=bool)
    support = image_support(data)
    voxel_ml = float(np.prod(zooms)) / 1000.0
    volume = float(mask.sum()) * voxel_ml
    support_ml = float(support.sum()) * voxel_ml
    both = float((mask & support).sum())
    support_dice = 2.0 * both / max(1.0, float(mask.sum() + support.sum()))
    inside = both / max(1.0, float(mask.sum()))
    low, high = plausible_volume_ml(zooms, support_ml)
    problems = []
    if not low <= volume <= high:
        problems.append(f"volume {volume:.0f} mL is outside the plausible {low:.0f}-{high:.0f} mL")
    if inside < MIN_INSIDE_SUPPORT:
        problems.append(f"{100 * (1 - inside):.0f}% of it lies outside the image's signal")
    warning = None
    if problems:
        warning = f"brain mask ({method}) looks wrong: {'; '.join(problems)}"
    return {"Method": method, "VolumeML": round(volume, 1), "SupportDice": round(support_dice, 3),
            "InsideSupport": round(inside, 3), "Warning": warning}


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


def inverted_image(data: np.ndarray) -> np.ndarray:
    """The image's contrast turned over inside its support (0 outside): T2-like brains look T1-like.

    Intensities are clipped at the support's 99.5th percentile ``p`` and mapped to ``p - value``:
    CSF (bright in T2w) becomes dark and white matter bright, as deepbet's T1w training expects.
    """
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    support = image_support(data)
    top = float(np.percentile(data[support], 99.5)) if support.any() else float(data.max())
    return np.where(support, top - np.minimum(data, top), 0.0).astype(np.float32)


def deepbet_inverted_mask(in_file: str | Path, work_dir: str | Path | None = None) -> np.ndarray:
    """deepbet on :func:`inverted_image` of ``in_file`` (written next to ``work_dir`` or in a temp dir)."""
    import tempfile

    img = nib.load(str(in_file))
    inverted = nib.Nifti1Image(inverted_image(np.asarray(img.dataobj, dtype=np.float32)), img.affine)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / "inverted.nii.gz"
        nib.save(inverted, str(path))
        return deepbet_mask(path)


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


def candidate_methods(suffix: str, have_t1w: bool) -> tuple[str, ...]:
    """Mask methods for a whole-head ``suffix`` image, best first (T1W_TRANSFER only with a T1w)."""
    order = T1W_ORDER if suffix in T1W_LIKE else METHOD_ORDER.get(suffix, DEFAULT_ORDER)
    return tuple(m for m in order if m != T1W_TRANSFER or have_t1w)


def _run_method(method: str, in_file: Path, t1w_file, t1w_mask, work_dir: Path) -> tuple[np.ndarray, str]:
    if method == DEEPBET:
        return deepbet_mask(in_file), "deepbet (T1w-trained CNN, weights in its wheel)"
    if method == DEEPBET_INVERTED:
        return (deepbet_inverted_mask(in_file, work_dir),
                "deepbet on the image with its contrast turned over inside the head (CSF dark, as in a T1w)")
    if method == T1W_TRANSFER:
        return transfer_mask(in_file, t1w_file, t1w_mask), f"brain mask of {Path(t1w_file).name} registered rigidly"
    if method == TEMPLATE:
        tpl, tpl_mask, desc = template_files()
        return transfer_mask(in_file, tpl, tpl_mask, transform="Affine"), desc
    raise ValueError(f"unknown mask method {method!r}")


def compute_mask(in_file: str | Path, out_file: str | Path, *, mode: str = "auto", suffix: str = "T1w",
                 t1w_file: str | Path | None = None, t1w_mask: str | Path | None = None) -> MaskResult:
    """Brain mask of ``in_file`` written to ``out_file`` (uint8, same grid); returns the method and its QC.

    ``mode``: ``auto`` (detect stripped input, else strip), ``on`` (always strip) or ``off``
    (the input is already stripped: mask = its foreground). A whole-head image is masked by the
    methods of :func:`candidate_methods` in turn until one passes :func:`mask_qc`; when none does,
    the first is kept and its warning logged (the runner shows it on the console).
    """
    in_file = Path(in_file)
    img = nib.load(str(in_file))
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if mode not in {"auto", "on", "off"}:
        raise ValueError(f"unknown skull-strip mode {mode!r}")
    if mode == "off" or (mode == "auto" and looks_skull_stripped(data, zooms)):
        mask, method, detail = nonzero_mask(data), ALREADY, f"input foreground (--skull-strip {mode})"
        qc = dict(mask_qc(mask, data, zooms, method), Rejected=[])
    else:
        have_t1w = t1w_file is not None and t1w_mask is not None
        tried = []
        for candidate in candidate_methods(suffix, have_t1w):
            mask, detail = _run_method(candidate, in_file, t1w_file, t1w_mask, Path(out_file).parent)
            qc = mask_qc(mask, data, zooms, candidate)
            tried.append((candidate, detail, mask, qc))
            if qc["Warning"] is None:
                break
            LOGGER.info("%s: %s; trying the next method", in_file, qc["Warning"])
        keep = tried[-1] if tried[-1][3]["Warning"] is None else tried[0]
        method, detail, mask, qc = keep
        qc = dict(qc, Rejected=[{k: t[3][k] for k in ("Method", "VolumeML", "Warning")}
                                for t in tried if t is not keep])
    if not mask.any():
        raise DataError(f"brain mask is empty (method {method})", path=in_file)
    if qc.get("Warning"):
        LOGGER.warning("%s: %s", in_file, qc["Warning"])
    out = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    out.header.set_xyzt_units("mm", "sec")
    nib.save(out, str(out_file))
    volume_ml = float(mask.sum()) * float(np.prod(zooms)) / 1000.0
    return MaskResult(method, detail, round(volume_ml, 1), qc)
