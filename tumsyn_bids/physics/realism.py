"""Realism: bias field, Rician noise, random affine + elastic deformation, resolution loss.

Everything is vectorised numpy/scipy and separable where possible: smooth random fields are
cubic splines through a few control points, evaluated on the full grid with three small matrix
products (no full-size interpolation); resampling is one ``map_coordinates`` pass (linear).

Geometry conventions: an output grid keeps the phantom's axis directions (so resampling is
axis-aligned), voxel sizes in mm, affines voxel -> world (mm).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


# ------------------------------------------------------------------------- smooth fields


def spline_matrix(control: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(len(positions), len(control)) matrix evaluating a cubic spline through ``control``."""
    from scipy.interpolate import CubicSpline

    control = np.asarray(control, dtype=np.float64)
    positions = np.clip(np.asarray(positions, dtype=np.float64), control[0], control[-1])
    if len(control) < 3:
        from scipy.interpolate import interp1d

        return interp1d(control, np.eye(len(control)), axis=0)(positions)
    return CubicSpline(control, np.eye(len(control)), axis=0, bc_type="natural")(positions)


def separable_eval(coarse: np.ndarray, mats: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Evaluate a coarse (nx, ny, nz) array on a grid through three (N_a, n_a) matrices."""
    a = np.asarray(coarse, dtype=np.float32)
    for m in (mats[2], mats[1], mats[0]):  # contract the last axis, new axis first: cyclic
        a = np.tensordot(m.astype(np.float32), a, axes=([1], [2]))
    return np.ascontiguousarray(a)


def smooth_random_field(shape: tuple[int, int, int], rng: np.random.Generator, n_control: int = 4) -> np.ndarray:
    """Smooth random field on ``shape``: standard-normal values at n^3 control points, spline-interpolated."""
    coarse = rng.standard_normal((n_control,) * 3)
    mats = tuple(spline_matrix(np.linspace(0, s - 1, n_control), np.arange(s)) for s in shape)
    return separable_eval(coarse, mats)  # type: ignore[arg-type]


def bias_field(shape: tuple[int, int, int], rng: np.random.Generator, strength: float = 0.2,
               n_control: int = 4) -> np.ndarray:
    """Smooth multiplicative bias field exp(strength * f), f a smooth field of about unit spread."""
    field = smooth_random_field(shape, rng, n_control)
    return np.exp(np.float32(strength) * np.clip(field, -2.5, 2.5)).astype(np.float32)


def add_rician_noise(image: np.ndarray, snr: float, rng: np.random.Generator,
                     mask: np.ndarray | None = None, reference: float | None = None) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (Rician).

    sigma = reference / snr, ``reference`` defaulting to the mean signal inside ``mask`` (or, with
    no mask, over voxels above 10 % of the maximum).
    """
    if snr is None or snr <= 0:
        raise ValueError(f"SNR must be positive, got {snr}")
    if reference is None:
        sel = mask if mask is not None and mask.any() else image > 0.1 * float(image.max())
        reference = float(image[sel].mean()) if sel.any() else float(image.max()) or 1.0
    sigma = np.float32(reference / snr)
    real = rng.standard_normal(image.shape, dtype=np.float32)
    real *= sigma
    real += image
    imag = rng.standard_normal(image.shape, dtype=np.float32)
    imag *= sigma
    return np.sqrt(real * real + imag * imag, dtype=np.float32)


# ----------------------------------------------------------------------------- geometry


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def output_grid(shape: tuple[int, ...], affine: np.ndarray, voxel_size, bbox_mask: np.ndarray | None = None,
                margin_mm: float = 4.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Grid at ``voxel_size`` mm with the source's axis directions, covering its field of view
    (or the bounding box of ``bbox_mask`` plus ``margin_mm``), centred on it."""
    affine = np.asarray(affine, dtype=np.float64)
    zooms = voxel_sizes(affine)
    vox = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    if bbox_mask is not None and bbox_mask.any():
        idx = (np.nonzero(bbox_mask.any(axis=(1, 2))), np.nonzero(bbox_mask.any(axis=(0, 2))),
               np.nonzero(bbox_mask.any(axis=(0, 1))))
        lo = np.array([i[0][0] for i in idx], dtype=float) - margin_mm / zooms
        hi = np.array([i[0][-1] for i in idx], dtype=float) + margin_mm / zooms
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, np.asarray(shape[:3]) - 1)
    else:
        lo, hi = np.zeros(3), np.asarray(shape[:3], dtype=float) - 1
    extent = (hi - lo + 1) * zooms  # mm, edge to edge
    n = np.maximum(1, np.round(extent / vox - 1e-6)).astype(int)
    centre = (lo + hi) / 2 * zooms  # mm along the source axes, from voxel 0
    start = centre - (n - 1) / 2 * vox
    directions = affine[:3, :3] / zooms
    out = np.eye(4)
    out[:3, :3] = directions * vox
    out[:3, 3] = affine[:3, 3] + directions @ start
    return tuple(int(v) for v in n), out  # type: ignore[return-value]


@dataclass(frozen=True)
class SpatialTransform:
    """A random spatial map from output (scanner) space to phantom space.

    ``matrix`` (4x4) maps world to world; ``displacement`` (3, n, n, n) holds elastic control-point
    displacements in mm along the phantom's axes, placed evenly over the phantom grid of shape
    ``grid_shape`` (cubic-spline interpolated in between).
    """

    matrix: np.ndarray
    displacement: np.ndarray | None = None
    grid_shape: tuple[int, int, int] | None = None

    def then(self, matrix: np.ndarray) -> "SpatialTransform":
        """The same deformation after an extra world->world matrix on the scanner side."""
        return replace(self, matrix=self.matrix @ np.asarray(matrix, dtype=np.float64))


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rigid(rng: np.random.Generator, centre: np.ndarray, rotation_deg: float = 5.0,
                 translation_mm: float = 3.0) -> np.ndarray:
    """Random rigid world->world matrix (head repositioning between sessions)."""
    m = np.eye(4)
    m[:3, :3] = _rotation(rng.uniform(-rotation_deg, rotation_deg, 3))
    c = np.asarray(centre, dtype=float)
    m[:3, 3] = c - m[:3, :3] @ c + rng.uniform(-translation_mm, translation_mm, 3)
    return m


def random_transform(rng: np.random.Generator, phantom_shape: tuple[int, int, int], phantom_affine: np.ndarray, *,
                     rotation_deg: float = 10.0, scale: float = 0.08, shear: float = 0.03,
                     translation_mm: float = 5.0, elastic_mm: float = 2.0, n_control: int = 5) -> SpatialTransform:
    """Random affine (rotation, scaling, shear, translation about the phantom centre) plus a
    smooth elastic field of control displacements ~ N(0, elastic_mm)."""
    centre = np.asarray(phantom_affine, dtype=float) @ np.append((np.asarray(phantom_shape) - 1) / 2, 1.0)
    lin = _rotation(rng.uniform(-rotation_deg, rotation_deg, 3))
    lin = lin @ np.diag(1.0 + rng.uniform(-scale, scale, 3))
    sh = np.eye(3)
    sh[np.triu_indices(3, 1)] = rng.uniform(-shear, shear, 3)
    lin = lin @ sh
    m = np.eye(4)
    m[:3, :3] = lin
    m[:3, 3] = centre[:3] - lin @ centre[:3] + rng.uniform(-translation_mm, translation_mm, 3)
    disp = None
    if elastic_mm > 0:
        disp = (rng.standard_normal((3, n_control, n_control, n_control)) * elastic_mm).astype(np.float32)
    return SpatialTransform(m, disp, tuple(int(s) for s in phantom_shape))  # type: ignore[arg-type]


def sampling_coordinates(out_shape: tuple[int, int, int], out_affine: np.ndarray, src_affine: np.ndarray,
                         transform: SpatialTransform | None = None) -> np.ndarray:
    """(3, X, Y, Z) float32 source voxel coordinates of every output voxel centre."""
    src_inv = np.linalg.inv(np.asarray(src_affine, dtype=np.float64))
    base = src_inv @ np.asarray(out_affine, dtype=np.float64)
    full = base if transform is None else src_inv @ transform.matrix @ np.asarray(out_affine, dtype=np.float64)
    axes = [np.arange(n, dtype=np.float64) for n in out_shape]
    coords = np.empty((3, *out_shape), dtype=np.float32)
    for c in range(3):
        row = full[c]
        coords[c] = (
            (row[0] * axes[0] + row[3])[:, None, None].astype(np.float32)
            + (row[1] * axes[1])[None, :, None].astype(np.float32)
            + (row[2] * axes[2])[None, None, :].astype(np.float32)
        )
    if transform is not None and transform.displacement is not None:
        off_diag = base[:3, :3] - np.diag(np.diag(base[:3, :3]))
        if np.abs(off_diag).max() > 1e-6:
            raise ValueError("elastic deformation needs an output grid aligned with the phantom axes")
        n = transform.displacement.shape[1]
        grid = transform.grid_shape or out_shape
        mats = tuple(
            spline_matrix(np.linspace(0, grid[a] - 1, n), base[a, a] * axes[a] + base[a, 3]) for a in range(3)
        )
        zooms = voxel_sizes(src_affine)
        for c in range(3):
            coords[c] += separable_eval(transform.displacement[c] / np.float32(zooms[c]), mats)  # type: ignore[arg-type]
    return coords


def warp(image: np.ndarray, coords: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Sample ``image`` at ``coords`` (from :func:`sampling_coordinates`), float32 out."""
    from scipy import ndimage

    src = np.asarray(image, dtype=np.float32)
    return ndimage.map_coordinates(src, coords, order=order, mode="constant", cval=cval,
                                   prefilter=order > 1, output=np.float32)


def psf_blur(image: np.ndarray, src_voxel, fwhm_mm) -> np.ndarray:
    """Gaussian blur bringing a ``src_voxel`` image to a point-spread FWHM of ``fwhm_mm`` per axis
    (the acquisition's resolution: partial volume / thick-slice profile)."""
    from scipy import ndimage

    src = np.broadcast_to(np.asarray(src_voxel, dtype=float), (3,))
    fwhm = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,))
    sigma = np.sqrt(np.maximum(fwhm**2 - src**2, 0.0)) * FWHM_TO_SIGMA / src
    sigma = np.where(sigma < 0.25, 0.0, sigma)
    if not sigma.any():
        return np.asarray(image, dtype=np.float32)
    return ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), sigma, truncate=3.0, output=np.float32)


def resample_to_voxel_size(image: np.ndarray, affine: np.ndarray, voxel_size, fwhm_mm=None,
                           bbox_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Downsample (or upsample) to ``voxel_size`` with a PSF of ``fwhm_mm`` (default: the voxel)."""
    vox = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    blurred = psf_blur(image, voxel_sizes(affine), vox if fwhm_mm is None else fwhm_mm)
    shape, out_affine = output_grid(image.shape, affine, vox, bbox_mask)
    coords = sampling_coordinates(shape, out_affine, affine)
    return warp(blurred, coords), out_affine


def thick_slice(image: np.ndarray, affine: np.ndarray, axis: int, thickness: float,
                spacing: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Thick-slice acquisition along array ``axis``: slice profile FWHM ``thickness`` mm, slices
    every ``spacing`` mm (default: contiguous), in-plane resolution unchanged."""
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis}")
    if thickness <= 0 or (spacing is not None and spacing <= 0):
        raise ValueError(f"slice thickness and spacing must be positive, got {thickness}, {spacing}")
    zooms = voxel_sizes(affine)
    vox, fwhm = zooms.copy(), zooms.copy()
    vox[axis] = spacing or thickness
    fwhm[axis] = thickness
    return resample_to_voxel_size(image, affine, vox, fwhm)


def deform_phantom(phantom, transform: SpatialTransform):
    """The phantom resampled through ``transform`` on its own grid (soft maps linearly, labels
    and mask by nearest neighbour)."""
    coords = sampling_coordinates(phantom.shape, phantom.affine, phantom.affine, transform)
    mask = warp(phantom.brain_mask.astype(np.float32), coords) > 0.5
    if phantom.probs is not None:
        probs = np.stack([warp(p, coords) for p in phantom.probs])
        return replace(phantom, probs=probs, brain_mask=mask)
    from scipy import ndimage

    air = next((i for i, c in enumerate(phantom.classes) if c.kind == "air"), 0)
    labels = ndimage.map_coordinates(phantom.labels, coords, order=0, mode="constant", cval=air)
    return replace(phantom, labels=labels.astype(phantom.labels.dtype), brain_mask=mask)
