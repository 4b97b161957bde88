"""Phantoms: per-voxel tissue information (hard labels or soft maps) with a brain mask.

- :func:`load_labelmap_phantom` reads a FreeSurfer/SynthSeg-style label map (unknown labels go
  to a logged fallback class).
- :func:`mni_phantom` builds a head from the ICBM152 2009 GM/WM maps that ship in the nilearn
  wheel (no download), shrunk to an average adult size: CSF is the intracranial space not taken
  by GM/WM, and :func:`head_labels` adds a head around it (dura, two tables of cortical bone
  around the diploe, galea and temporalis, subcutaneous fat, skin, face with orbits, globes,
  optic nerves and air sinuses, neck with the cervical spine and cord), so that deepbet and the
  reports see something that looks like a head. Label maps are read as they are (no head added).
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

# The MNI152 head is larger than an average adult's (its intracranial volume is ~1.95 L here; adult
# total intracranial volume is ~1.2-1.8 L, mean ~1.5 L: Buckner et al., NeuroImage 2004; Malone et
# al., NeuroImage 2015), so the template is shrunk about the anterior commissure by this factor
# (1.95 L x 0.92^3 = 1.52 L). The random affine of each simulated subject adds +-8 % per axis.
MNI_SCALE = 0.92
# Field of view of the phantom in (scaled) MNI world mm, voxel centres: the head with the face and
# the neck down to about C2 (a sagittal 3D T1w field of view centred on the brain).
_FOV_MM = ((-94.0, 94.0), (-118.0, 106.0), (-110.0, 98.0))

# Layers outside the intracranial surface, by distance from it (mm). Adult calvarium: ~6-7 mm,
# two tables of cortical bone ~1.5 mm each around the diploe (Lynnerup et al., Forensic Sci Int
# 2005, mean frontal/parietal thickness 6-7 mm; Law, AJNR 1993). Dura ~1 mm. Subarachnoid CSF
# over the convexity ~1-3 mm: the template's own brain mask ends at the pial surface plus about
# 1 mm, so 1 mm of CSF is added (more CSF would inflate the intracranial volume).
_SUBARACHNOID_MM = 1.0
_DURA_MM = 1.0
_INNER_TABLE_MM = 1.5
_DIPLOE_MM = 2.5
_OUTER_TABLE_MM = 1.5
# Scalp (outside the outer table): galea/periosteum ~1 mm (soft tissue), subcutaneous fat ~3-4 mm,
# skin ~2 mm; total scalp ~5-7 mm over the vertex (Hori et al., Surg Radiol Anat 1972 as used by
# scalp-thickness studies; Chauvet et al., Clin Anat 2010). Temporalis muscle adds up to ~8 mm over
# the temporal squama.
_GALEA_MM = 1.0
_SCALP_FAT_MM = 3.5
_SKIN_MM = 2.0
_TEMPORALIS_MM = 8.0
# Eyes: globe diameter ~24 mm (Bekerman et al., J Ophthalmol 2014), interpupillary distance ~62 mm;
# optic nerve with its sheath ~5-6 mm across in the orbit (Lagreze et al., IOVS 2009).
_GLOBE_RADIUS_MM = 12.0
_EYE_X_MM = 31.0
_NERVE_RADIUS_MM = 2.5
# Cervical spine: canal ~14 mm across (cord ~9 mm, CSF around), vertebral body ~16 mm across.
_CANAL_RADIUS_MM = 7.5
_CORD_RADIUS_MM = 4.5

# Classes of the demo head, after wm, gm, csf: (class name, tissue kind).
HEAD_CLASSES: tuple[tuple[str, str], ...] = (
    ("dura", "dura"), ("skull", "bone"), ("diploe", "marrow"), ("scalp_fat", "fat"),
    ("skin_muscle", "muscle"), ("eye", "eye"), ("nerve", "nerve"),
)
_AIR, _WM, _GM, _CSF = -1, 0, 1, 2  # label values of the extra-cerebral label volume (>= 3: HEAD_CLASSES)
_DURA, _BONE, _MARROW, _FAT, _SOFT, _EYE, _NERVE = range(3, 10)


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


def _scaled_template_maps() -> tuple[list[np.ndarray], np.ndarray]:
    """GM, WM, T1 template maps (0-1) shrunk by :data:`MNI_SCALE` onto the 1 mm :data:`_FOV_MM` grid."""
    from scipy import ndimage

    imgs = [_nilearn_map(kind) for kind in ("gm", "wm", "t1")]
    src = imgs[0].affine
    if not np.allclose(src[:3, :3], np.diag(np.diag(src[:3, :3]))):
        raise ValueError("the nilearn MNI152 maps are expected on an axis-aligned grid")
    lo = np.array([a for a, _ in _FOV_MM])
    shape = tuple(int(round(b - a)) + 1 for a, b in _FOV_MM)
    affine = np.eye(4)
    affine[:3, 3] = lo
    # output voxel v (world lo + v) samples the template at world (lo + v) / scale
    zooms = np.diag(src[:3, :3])
    matrix = 1.0 / (MNI_SCALE * zooms)
    offset = (lo / MNI_SCALE - src[:3, 3]) / zooms
    maps = []
    for img in imgs:
        data = np.asarray(img.get_fdata(dtype=np.float32))
        data /= max(float(data.max()), 1e-6)  # stored as 0-255: probabilities in [0, 1]
        maps.append(ndimage.affine_transform(data, np.diag(matrix), offset, output_shape=shape, order=1,
                                             mode="constant", cval=0.0).astype(np.float32))
    return maps, affine


def _world_grid(shape: tuple[int, int, int], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open (broadcastable) world x, y, z coordinates of an axis-aligned grid."""
    axes = [affine[i, 3] + affine[i, i] * np.arange(n, dtype=np.float32) for i, n in enumerate(shape)]
    return (axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])


def _ellipsoid(xyz, centre, radii) -> np.ndarray:
    x, y, z = xyz
    return (((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
            + ((z - centre[2]) / radii[2]) ** 2) <= 1.0


def _segment_distance(xyz, a, b) -> np.ndarray:
    """Distance (mm) of every grid point from the segment a-b."""
    x, y, z = xyz
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    d = b - a
    t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1] + (z - a[2]) * d[2]) / float(d @ d), 0, 1)
    return np.sqrt((x - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (z - a[2] - t * d[2]) ** 2)


def head_labels(icv: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Extra-cerebral tissue labels (int8; -1 air, 3.. :data:`HEAD_CLASSES`) around an intracranial mask.

    ``icv`` is the intracranial space (brain + CSF) on an axis-aligned 1 mm grid in (scaled) MNI
    world mm. Built from distances to the intracranial surface (dura, inner table, diploe, outer
    table, galea, temporalis) and to the head's surface (skin, subcutaneous fat), plus the face
    and neck below the brain: orbits with globes, orbital fat and optic nerves; nasal cavity,
    maxillary sinuses and pharynx (air, walled by bone); cervical spine (vertebral bodies of
    marrow in cortical bone, canal of CSF around the cord); muscle elsewhere. Voxels inside
    ``icv`` are left at -1 (brain tissue comes from the template maps).
    """
    from scipy import ndimage

    shape = icv.shape
    xyz = _world_grid(shape, affine)
    x, y, z = xyz
    d = ndimage.distance_transform_edt(~icv).astype(np.float32)  # mm outside the intracranial surface
    where = np.argwhere(icv)
    world = where + affine[:3, 3]
    zmin = float(world[:, 2].min())
    # Anchors read from the brain itself: the medulla at the bottom of the intracranial space and the
    # frontal pole above the orbits.
    low = world[world[:, 2] <= zmin + 6]
    low = low[np.abs(low[:, 0]) < 15]
    y_cord = float(np.median(low[:, 1])) if len(low) else -35.0
    frontal = world[(np.abs(np.abs(world[:, 0]) - _EYE_X_MM) < 6) & (world[:, 2] < 0)]
    y_front = float(frontal[:, 1].max()) if len(frontal) else 60.0
    # Globes: 8 mm behind the frontal pole, as high as the orbital roof allows (>= 6 mm of dura and
    # bone between globe and intracranial space).
    y_eye = y_front - 8.0
    z_eye = -20.0
    for z_try in np.arange(-10.0, -70.0, -1.0):
        centre = np.round(np.array([_EYE_X_MM, y_eye, z_try]) - affine[:3, 3]).astype(int)
        if not all(0 <= c < n for c, n in zip(centre, shape, strict=True)):
            continue
        if d[tuple(centre)] >= _GLOBE_RADIUS_MM + 6.0:
            z_eye = float(z_try)
            break

    skull_out = _DURA_MM + _INNER_TABLE_MM + _DIPLOE_MM + _OUTER_TABLE_MM
    # Temporalis: up to _TEMPORALIS_MM over the temporal squama, tapering off.
    temporalis = (_TEMPORALIS_MM * np.clip((np.abs(x) - 40.0) / 20.0, 0, 1)
                  * np.clip(1 - np.abs(z - 5.0) / 35.0, 0, 1) * np.clip(1 - np.abs(y + 5.0) / 45.0, 0, 1))
    cranium = d <= skull_out + _GALEA_MM + temporalis + _SCALP_FAT_MM + _SKIN_MM
    # Face and neck (solids, then the skin and fat follow their surface).
    face = (_ellipsoid(xyz, (0, y_eye - 30, z_eye - 22), (64, 46, 50))
            | _ellipsoid(xyz, (0, y_eye + 12, z_eye - 24), (11, 18, 20))  # nose
            | _ellipsoid(xyz, (0, y_eye - 32, z_eye - 62), (50, 40, 30)))  # jaw
    neck = (((x / 54.0) ** 2 + ((y - y_cord - 6.0) / 50.0) ** 2) <= 1.0) & (z <= zmin + 30)
    head = cranium | face | neck
    pad = 5  # close on a padded copy: the neck leaves through the bottom of the field of view
    head = ndimage.binary_closing(np.pad(head, pad, mode="edge"), iterations=4,
                                  structure=ndimage.generate_binary_structure(3, 1))[pad:-pad, pad:-pad, pad:-pad]
    head = ndimage.binary_fill_holes(head)
    e = ndimage.distance_transform_edt(head).astype(np.float32)  # mm inside the head's surface

    labels = np.full(shape, _AIR, dtype=np.int8)
    labels[head] = _SOFT  # muscle and other soft tissue by default
    # Spine: vertebral bodies and posterior arches (marrow in a cortical shell), canal, cord.
    below = z <= zmin + 8
    r_canal = np.sqrt(x ** 2 + (y - y_cord) ** 2)
    body = (((x / 9.0) ** 2 + ((y - y_cord - 17.0) / 8.0) ** 2) <= 1) & (z <= zmin - 4)
    arch = ((((x / 14.0) ** 2 + ((y - y_cord + 2.0) / 12.0) ** 2) <= 1) & (z <= zmin - 4)
            & ~(r_canal <= _CANAL_RADIUS_MM))
    spine_bone = ndimage.binary_dilation(body | arch) & head
    labels[spine_bone] = _BONE
    labels[(body | arch) & head] = _MARROW
    # Air: nasal cavity, maxillary sinuses, pharynx, each walled by 1.5 mm of bone.
    air = (_ellipsoid(xyz, (0, y_eye - 12, z_eye - 18), (9, 26, 20))
           | _ellipsoid(xyz, (22, y_eye - 8, z_eye - 26), (11, 15, 12))
           | _ellipsoid(xyz, (-22, y_eye - 8, z_eye - 26), (11, 15, 12))
           | ((((x / 12.0) ** 2 + ((y - y_cord - 36.0) / 7.0) ** 2) <= 1) & (z <= z_eye - 30)))
    air &= head & (e > _SKIN_MM + 1.0)
    walls = ndimage.binary_dilation(air, iterations=2) & head & ~air
    labels[walls] = _BONE
    labels[air] = _AIR
    # Orbits: fat around the globe back to the apex, bony walls; the globe; the optic nerve.
    for side in (1.0, -1.0):
        cx = side * _EYE_X_MM
        orbit = _ellipsoid(xyz, (side * 29.0, y_eye - 8.0, z_eye), (17, 24, 17)) & (y <= y_eye + 10.0)
        orbit_walls = ndimage.binary_dilation(orbit, iterations=2) & ~orbit & (y <= y_eye + 6.0)
        labels[orbit_walls & head] = _BONE
        labels[orbit & head] = _FAT
        nerve = _segment_distance(xyz, (cx, y_eye - _GLOBE_RADIUS_MM + 1.0, z_eye),
                                  (side * 12.0, y_eye - 36.0, z_eye + 6.0)) <= _NERVE_RADIUS_MM
        labels[nerve & head] = _NERVE
        labels[_ellipsoid(xyz, (cx, y_eye, z_eye), (_GLOBE_RADIUS_MM,) * 3)] = _EYE
    # Skin and subcutaneous fat follow the head's surface (over the face and neck too).
    labels[head & (e <= _SKIN_MM + _SCALP_FAT_MM) & (labels == _SOFT)] = _FAT
    labels[head & (e <= _SKIN_MM) & (labels != _EYE)] = _SOFT
    # Cranial layers by distance from the intracranial surface (the skull base included).
    t = 0.0
    for label, thick in ((_DURA, _DURA_MM), (_BONE, _INNER_TABLE_MM), (_MARROW, _DIPLOE_MM),
                         (_BONE, _OUTER_TABLE_MM)):
        shell = (d > t) & (d <= t + thick)
        labels[shell] = label
        t += thick
    # The foramen magnum: the canal runs from the medulla down through the skull base.
    canal = below & (r_canal <= _CANAL_RADIUS_MM)
    labels[canal & ~icv] = _CSF
    labels[canal & ~icv & (r_canal <= _CORD_RADIUS_MM)] = _NERVE
    labels[icv] = _AIR
    return labels


@functools.lru_cache(maxsize=4)
def _mni_phantom_cached(voxel_size: float) -> Phantom:
    from scipy import ndimage

    base = 1 if voxel_size < 2.0 else 2
    if not np.isclose(voxel_size, base):
        return resample_phantom(_mni_phantom_cached(float(base)), voxel_size)
    (gm, wm, t1), affine = _scaled_template_maps()
    # The nilearn template is brain-masked: its support is the intracranial space (sulcal CSF
    # included); holes (if any) are filled; a thin subarachnoid layer is added around it.
    icv = ndimage.binary_fill_holes((t1 > 0.01) | (gm + wm > 0.5))
    icv = ndimage.distance_transform_edt(~icv) <= _SUBARACHNOID_MM
    labels = head_labels(icv, affine)
    gm = np.clip(gm, 0, 1)
    wm = np.clip(wm, 0, 1)
    total_tissue = gm + wm
    over = total_tissue > 1
    gm[over] /= total_tissue[over]
    wm[over] /= total_tissue[over]
    tissue = np.clip(gm + wm, 0, 1)
    icv_soft = np.clip(ndimage.gaussian_filter(icv.astype(np.float32), 0.6), 0, 1)
    icv_soft = np.maximum(icv_soft, tissue)
    outside = 1.0 - icv_soft
    classes = [TissueClass("wm", "wm"), TissueClass("gm", "gm"), TissueClass("csf", "csf")]
    classes += [TissueClass(name, kind) for name, kind in HEAD_CLASSES]
    probs = np.empty((len(classes), *gm.shape), dtype=np.float32)
    probs[0], probs[1] = wm, gm
    probs[2] = np.clip(icv_soft - tissue, 0, 1) + outside * (labels == _CSF)
    for k in range(3, len(classes)):
        probs[k] = outside * (labels == k)
    del labels, gm, wm, t1, tissue, icv_soft, outside
    mask = icv
    if base == 2:
        probs = np.stack([_block_mean(p, 2) for p in probs]).astype(np.float32)
        mask = _block_mean(icv.astype(np.float32), 2) > 0.5
        affine = affine.copy()
        affine[:3, 3] += 0.5
        affine[:3, :3] *= 2
    total = probs.sum(axis=0)
    np.maximum(total, 1.0, out=total)
    probs /= total
    return Phantom(tuple(classes), affine, mask, probs=probs,
                   source=f"nilearn MNI152 2009 head x{MNI_SCALE:g} ({base} mm)")


def mni_phantom(voxel_size: float = 1.0) -> Phantom:
    """Head phantom from nilearn's ICBM152 2009 tissue maps at isotropic ``voxel_size`` mm.

    Soft maps (partial volume kept): WM, GM, CSF (intracranial space minus GM and WM, plus the
    spinal canal), then the extra-cerebral head of :func:`head_labels` (dura, skull tables,
    diploe, fat, skin and muscle, eyes, optic nerves and cord). The template is shrunk to an
    average adult head (:data:`MNI_SCALE`). Cached per voxel size (treat as read-only).
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
    for n_old, n_new in zip(phantom.shape, shape, strict=True):
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
