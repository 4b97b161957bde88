"""Phantoms: per-voxel tissue information (hard labels or soft maps) with a brain mask.

- :func:`load_labelmap_phantom` reads a FreeSurfer/SynthSeg-style label map (unknown labels go
  to a logged fallback class).
- :func:`mni_phantom` builds a head from the ICBM152 2009 GM/WM maps that ship in the nilearn
  wheel (no download): CSF is the intracranial space not taken by GM/WM, and a simple
  extra-cerebral layer (dura, skull, scalp fat, skin/muscle) is added as soft shells by distance
  from the intracranial surface, so that not everything is brain.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tumsyn_bids.errors import DataError
from tumsyn_bids.physics.tissues import KINDS, TissueClass, class_for_label

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Phantom:
    """Tissue classes on a voxel grid.

    Exactly one of ``labels`` (uint8/int16 index into ``classes`` per voxel) and ``probs``
    (float32 ``(K, X, Y, Z)`` soft maps; whatever is left to 1 is air) is set.
    ``brain_mask`` is the intracranial mask (brain + CSF), ``affine`` voxel -> world (mm).
    """

    classes: tuple[TissueClass, ...]
    affine: np.ndarray
    brain_mask: np.ndarray
    labels: np.ndarray | None = None
    probs: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if (self.labels is None) == (self.probs is None):
            raise ValueError("a Phantom needs exactly one of labels or probs")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.brain_mask.shape)  # type: ignore[return-value]

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    def head_mask(self) -> np.ndarray:
        """Voxels holding any tissue other than air."""
        if self.labels is not None:
            air = np.array([c.kind == "air" for c in self.classes])
            return ~air[self.labels]
        return self.probs.sum(axis=0) > 0.05

    def class_index(self, name: str) -> int:
        for i, c in enumerate(self.classes):
            if c.name == name:
                return i
        raise KeyError(name)

    def fractions(self, name: str) -> np.ndarray:
        """Soft (or 0/1) map of one class."""
        i = self.class_index(name)
        if self.probs is not None:
            return self.probs[i]
        return (self.labels == i).astype(np.float32)


def labelmap_phantom(labels: np.ndarray, affine: np.ndarray, source: str = "labelmap") -> Phantom:
    """Phantom from an integer label array (FreeSurfer/SynthSeg label values)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise DataError(f"label map must be a 3D image, got shape {labels.shape}", path=source)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise DataError("label map holds NaN or infinite values", path=source)
        labels = np.rint(labels)
    labels = labels.astype(np.int64, copy=False)
    if labels.min() < 0:
        raise DataError(f"label map holds negative label {int(labels.min())}", path=source)
    present = np.flatnonzero(np.bincount(labels.ravel()))
    classes: list[TissueClass] = []
    index_of: dict[str, int] = {}
    lut = np.zeros(int(present.max()) + 1, dtype=np.int16)
    unknown = []
    for value in present:
        found = class_for_label(int(value))
        if found is None:
            unknown.append(int(value))
            found = ("unknown", "unknown")
        name, kind = found
        if name not in index_of:
            index_of[name] = len(classes)
            classes.append(TissueClass(name, kind))
        lut[value] = index_of[name]
    if unknown:
        log.warning("%s: labels %s are not in the tissue table; simulated as the fallback class 'unknown'",
                    source, unknown)
    dtype = np.uint8 if len(classes) < 256 else np.int16
    index = lut[labels].astype(dtype)
    brain = np.array([KINDS[c.kind].brain for c in classes])
    mask = _fill_holes(brain[index])
    return Phantom(tuple(classes), np.asarray(affine, dtype=np.float64), mask, labels=index, source=source)


def load_labelmap_phantom(path: str | Path) -> Phantom:
    """Read a label-map NIfTI (FreeSurfer labels, SynthSeg extra-cerebral labels) as a phantom."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise DataError(f"cannot read label map: {exc}", path=path) from exc
    shape = img.shape
    if len(shape) != 3:
        if len(shape) > 3 and all(s == 1 for s in shape[3:]):
            shape = shape[:3]
        else:
            raise DataError(f"label map must be a 3D image, got shape {tuple(img.shape)}", path=path)
    data = np.asarray(img.dataobj).reshape(shape)
    return labelmap_phantom(data, img.affine, source=str(path))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_fill_holes(mask)


# ----------------------------------------------------------------------------- MNI phantom

# Shells outside the intracranial surface (mm): (class, kind, inner, outer).
_SHELLS = (
    ("dura", "dura", 0.0, 1.5),
    ("skull", "bone", 1.5, 7.0),
    ("scalp_fat", "fat", 7.0, 11.0),
    ("skin_muscle", "muscle", 11.0, 13.5),
)
_PAD_MM = 16.0


_NILEARN_FILES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
}


def _nilearn_map(kind: str):
    """One ICBM152 2009 map shipped in the nilearn wheel, read without importing nilearn (slow)."""
    import importlib.util

    import nibabel as nib

    spec = importlib.util.find_spec("nilearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / _NILEARN_FILES[kind]
        if path.is_file():
            return nib.load(str(path))
    from nilearn import datasets  # fall back to the public API (same files)

    loader = {"gm": datasets.load_mni152_gm_template, "wm": datasets.load_mni152_wm_template,
              "t1": datasets.load_mni152_template}[kind]
    return loader(resolution=1)


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Average non-overlapping f^3 blocks (partial volume when coarsening by an integer factor)."""
    shape = [s // f * f for s in a.shape]
    a = a[: shape[0], : shape[1], : shape[2]]
    return a.reshape(shape[0] // f, f, shape[1] // f, f, shape[2] // f, f).mean(axis=(1, 3, 5))


@functools.lru_cache(maxsize=4)
def _mni_phantom_cached(voxel_size: float) -> Phantom:
    from scipy import ndimage

    base = 1 if voxel_size < 2.0 else 2
    if not np.isclose(voxel_size, base):
        return resample_phantom(_mni_phantom_cached(float(base)), voxel_size)
    # The wheel stores the maps at 1 mm; nilearn's own 2 mm resampling is slow, block-average instead.
    imgs = [_nilearn_map(kind) for kind in ("gm", "wm", "t1")]
    gm_img = imgs[0]
    maps1 = [np.asarray(img.get_fdata(dtype=np.float32)) for img in imgs]
    maps1 = [a / max(float(a.max()), 1e-6) for a in maps1]  # stored as 0-255: probabilities in [0, 1]
    affine = gm_img.affine.copy()
    pad1 = int(_PAD_MM)
    maps1 = [np.pad(a, pad1) for a in maps1]
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, pad1)
    maps2 = [_block_mean(a, 2) for a in maps1]
    affine2 = affine.copy()
    affine2[:3, :3] *= 2
    affine2[:3, 3] += affine[:3, :3] @ np.full(3, 0.5)
    # Intracranial space and the distance outside it, computed at 2 mm (cheap) in any case.
    # The nilearn template is brain-masked: its support is the intracranial space (sulcal CSF
    # included); holes (if any) are filled.
    icv2 = ndimage.binary_fill_holes((maps2[2] > 0.01) | (maps2[0] + maps2[1] > 0.5))
    dist2 = ndimage.distance_transform_edt(~icv2, sampling=2.0).astype(np.float32) - 1.0
    dist2[icv2] = -1.0
    if base == 1:
        gm, wm, t1 = maps1
        dist = ndimage.zoom(dist2, 2, order=1, grid_mode=True, mode="nearest").astype(np.float32)
        dist = np.pad(dist, [(0, s - d) for s, d in zip(gm.shape, dist.shape)], mode="edge")
        icv = ndimage.binary_fill_holes((t1 > 0.01) | (gm + wm > 0.5))
    else:
        gm, wm, t1 = maps2
        dist, icv, affine = dist2, icv2, affine2
    step = float(base)
    gm = np.clip(gm, 0, 1)
    wm = np.clip(wm, 0, 1)
    total_tissue = gm + wm
    over = total_tissue > 1
    gm[over] /= total_tissue[over]
    wm[over] /= total_tissue[over]
    tissue = np.clip(gm + wm, 0, 1)
    icv_soft = np.clip(ndimage.gaussian_filter(icv.astype(np.float32), 0.6 / step), 0, 1)
    icv_soft = np.maximum(icv_soft, tissue)
    csf = np.clip(icv_soft - tissue, 0, 1)
    maps = [wm, gm, csf]
    classes = [TissueClass("wm", "wm"), TissueClass("gm", "gm"), TissueClass("csf", "csf")]
    outside = 1.0 - icv_soft
    for name, kind, inner, outer in _SHELLS:
        ramp_in = np.clip((dist - inner) / step + 0.5, 0, 1)
        ramp_out = np.clip((outer - dist) / step + 0.5, 0, 1)
        maps.append(outside * np.minimum(ramp_in, ramp_out))
        classes.append(TissueClass(name, kind))
    probs = np.empty((len(maps), *gm.shape), dtype=np.float32)
    for k, m in enumerate(maps):
        probs[k] = m
    total = probs.sum(axis=0)
    np.maximum(total, 1.0, out=total)
    probs /= total
    return Phantom(tuple(classes), affine, icv, probs=probs, source=f"nilearn MNI152 2009 ({base} mm)")


def mni_phantom(voxel_size: float = 1.0) -> Phantom:
    """Head phantom from nilearn's ICBM152 2009 tissue maps at isotropic ``voxel_size`` mm.

    Soft maps (partial volume kept): WM, GM, CSF (intracranial space minus GM and WM), then
    shells for dura, skull, scalp fat and skin/muscle. Cached per voxel size (treat as read-only).
    """
    if not voxel_size or voxel_size <= 0:
        raise ValueError(f"voxel size must be positive, got {voxel_size}")
    return _mni_phantom_cached(float(voxel_size))


def resample_phantom(phantom: Phantom, voxel_size: float) -> Phantom:
    """Soft-map phantom on an isotropic ``voxel_size`` grid covering the same field of view.

    Coarser grids average the fine maps over each new voxel (partial volume); label phantoms are
    converted to soft maps first.
    """
    from tumsyn_bids.physics.realism import resample_to_voxel_size

    probs = phantom.probs if phantom.probs is not None else _labels_to_probs(phantom)
    ratio = np.asarray(voxel_size) / np.asarray(phantom.voxel_size)
    if np.allclose(ratio, np.round(ratio)) and np.allclose(ratio, ratio[0]) and ratio[0] >= 2:
        f = int(round(ratio[0]))  # integer factor: exact block averages
        affine = phantom.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ np.full(3, (f - 1) / 2)
        affine[:3, :3] *= f
        blocks = np.stack([_block_mean(p, f) for p in probs]).astype(np.float32)
        return Phantom(phantom.classes, affine, _block_mean(phantom.brain_mask.astype(np.float32), f) > 0.5,
                       probs=blocks, source=f"{phantom.source} at {voxel_size:g} mm")
    out = []
    affine = None
    for k in range(probs.shape[0]):
        data, affine = resample_to_voxel_size(probs[k], phantom.affine, (voxel_size,) * 3)
        out.append(np.clip(data, 0, 1))
    mask, _ = resample_to_voxel_size(phantom.brain_mask.astype(np.float32), phantom.affine, (voxel_size,) * 3)
    return Phantom(phantom.classes, affine, mask > 0.5, probs=np.stack(out).astype(np.float32),
                   source=f"{phantom.source} at {voxel_size:g} mm")


def _labels_to_probs(phantom: Phantom) -> np.ndarray:
    return np.stack([(phantom.labels == i).astype(np.float32) for i in range(len(phantom.classes))])


def pad_phantom(phantom: Phantom, shape: tuple[int, int, int]) -> Phantom:
    """Pad (centred) or crop a phantom to ``shape`` voxels; the affine follows."""
    slices_src, slices_dst, offset = [], [], []
    for n_old, n_new in zip(phantom.shape, shape):
        start = (n_new - n_old) // 2  # where old index 0 lands in the new grid
        src0, dst0 = max(0, -start), max(0, start)
        length = min(n_old - src0, n_new - dst0)
        slices_src.append(slice(src0, src0 + length))
        slices_dst.append(slice(dst0, dst0 + length))
        offset.append(-start)
    affine = phantom.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.asarray(offset, dtype=float)
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slices_dst)] = phantom.brain_mask[tuple(slices_src)]
    if phantom.probs is not None:
        probs = np.zeros((phantom.probs.shape[0], *shape), dtype=np.float32)
        probs[(slice(None), *slices_dst)] = phantom.probs[(slice(None), *slices_src)]
        return replace(phantom, affine=affine, brain_mask=mask, probs=probs)
    air = next((i for i, c in enumerate(phantom.classes) if c.kind == "air"), None)
    classes = phantom.classes
    if air is None:
        air = len(classes)
        classes = (*classes, TissueClass("background", "air"))
    labels = np.full(shape, air, dtype=phantom.labels.dtype)
    labels[tuple(slices_dst)] = phantom.labels[tuple(slices_src)]
    return replace(phantom, classes=classes, affine=affine, brain_mask=mask, labels=labels)
