"""Image fidelity metrics as the TUMSyn paper computes them: PSNR, SSIM, MAE on [0,1] intensities.

Each volume is clipped to its [0.01, 99.9] percentiles (lower bound floored at 0) and scaled to
[0,1] before comparison. Metrics are reported over the whole volume and, when a mask is given,
within it (PSNR/MAE over the masked voxels, SSIM as the mean of the local SSIM map over the mask).
Optional rigid registration of the REAL image to the SYNTH grid uses antspyx (imported lazily).
numpy/scipy only at import time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tumsyn_bids.errors import DataError

PERCENTILES = (0.01, 99.9)


@dataclass(frozen=True)
class Scores:
    """Fidelity of one comparison (NaN when the region is empty)."""

    psnr: float
    ssim: float
    mae: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def percentile_normalize(
    data: np.ndarray, mask: np.ndarray | None = None, percentiles: tuple[float, float] = PERCENTILES
) -> np.ndarray:
    """Clip to the given percentiles (lower floored at 0) and scale to [0,1], float32.

    Percentiles are taken over ``mask`` when given, else over the whole volume.
    """
    values = np.asarray(data, dtype=np.float32)
    sample = values[mask > 0] if mask is not None and np.any(mask) else values
    lo, hi = np.percentile(sample, percentiles)
    lo = max(float(lo), 0.0)
    if hi <= lo:
        return np.zeros_like(values)
    return ((np.clip(values, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical inputs)."""
    diff = _select(np.asarray(a, np.float64) - np.asarray(b, np.float64), mask)
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)


def mae(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error."""
    diff = _select(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), mask)
    return float(np.mean(diff)) if diff.size else float("nan")


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, win_size: int = 7) -> np.ndarray:
    """Local SSIM (Wang et al. 2004) with a uniform ``win_size`` window, sample covariances.

    Same conventions as ``skimage.metrics.structural_similarity`` with its defaults
    (K1=0.01, K2=0.03, uniform window of 7, unbiased covariance).
    """
    from scipy.ndimage import uniform_filter

    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    ndim = x.ndim
    npix = win_size**ndim
    cov_norm = npix / (npix - 1.0)
    ux, uy = uniform_filter(x, win_size), uniform_filter(y, win_size)
    uxx, uyy, uxy = uniform_filter(x * x, win_size), uniform_filter(y * y, win_size), uniform_filter(x * y, win_size)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux**2 + uy**2 + c1) * (vx + vy + c2)
    return num / den


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Mean SSIM over the volume (border of half a window excluded, as skimage does) or the mask."""
    smap = ssim_map(a, b, data_range)
    if mask is not None:
        values = smap[np.asarray(mask) > 0]
        return float(np.mean(values)) if values.size else float("nan")
    pad = 3
    inner = smap[tuple(slice(pad, -pad) if n > 2 * pad else slice(None) for n in smap.shape)]
    return float(np.mean(inner))


def score(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> Scores:
    """PSNR, SSIM and MAE of two already-normalised volumes."""
    return Scores(psnr(a, b, mask), ssim(a, b, mask), mae(a, b, mask))


def compare(synth: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Normalise both volumes, then score whole-volume and (when given) within the mask."""
    if synth.shape != real.shape:
        raise DataError(f"image shapes differ: {synth.shape} vs {real.shape}")
    s, r = percentile_normalize(synth), percentile_normalize(real)
    result = {"whole": score(s, r).as_dict()}
    if mask is not None:
        m = np.asarray(mask) > 0
        if m.shape != synth.shape:
            raise DataError(f"mask shape {m.shape} differs from image shape {synth.shape}")
        result["masked"] = score(s, r, m).as_dict()
    return result


def _select(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return values.ravel() if mask is None else values[np.asarray(mask) > 0]


def _load(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    if not Path(path).is_file():
        raise DataError(f"{what} image not found", path=path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"cannot read {what} image ({exc.__class__.__name__})", path=path) from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{what} image must be 3D, got shape {data.shape}", path=path)
    if not np.all(np.isfinite(data)):
        data = np.nan_to_num(data)
    return data, img.affine


def evaluate_files(synth: Path, real: Path, mask: Path | None = None, register: bool = False) -> dict:
    """Compare two NIfTI files (``real`` rigidly registered to ``synth`` when asked); a JSON-ready dict."""
    synth_data, synth_aff = _load(Path(synth), "SYNTH")
    real_data, real_aff = _load(Path(real), "REAL")
    if register:
        from tumsyn_bids.anat.registration import rigid_resample

        real_data = rigid_resample(synth, real)[0].astype(np.float32)
    elif real_data.shape != synth_data.shape or not np.allclose(real_aff, synth_aff, atol=1e-3):
        raise DataError(f"grid differs from SYNTH {Path(synth).name}; use --register", path=real)
    mask_data = None
    if mask is not None:
        mask_data, mask_aff = _load(Path(mask), "mask")
        if mask_data.shape != synth_data.shape:
            raise DataError(f"mask shape {mask_data.shape} differs from SYNTH {synth_data.shape}", path=mask)
    result = compare(synth_data, real_data, mask_data)
    return {"synth": str(synth), "real": str(real), "mask": None if mask is None else str(mask),
            "registered": bool(register), "normalisation": f"percentile {PERCENTILES[0]}/{PERCENTILES[1]}",
            **result}
