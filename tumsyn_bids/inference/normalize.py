"""Input intensity normalisation as the published weights expect (numpy only)."""

from __future__ import annotations

import numpy as np

from tumsyn_bids.errors import DataError

LOW_PERCENTILE = 0.01
HIGH_PERCENTILE = 99.9


def intensity_window(image: np.ndarray) -> tuple[float, float]:
    """The clipping window: [p0.01, p99.9] of all voxels, the lower bound floored at 0."""
    lo, hi = np.percentile(np.asarray(image, dtype=np.float32), [LOW_PERCENTILE, HIGH_PERCENTILE])
    return max(float(lo), 0.0), float(hi)


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """Clip to :func:`intensity_window` and scale linearly to [0, 1]; float32.

    Raises DataError for a non-finite image or one with no intensity range (e.g. all zeros).
    """
    image = np.asarray(image)
    if not np.all(np.isfinite(image)):
        raise DataError("image contains NaN or infinite values")
    lo, hi = intensity_window(image)
    if not hi > lo:
        raise DataError(f"image has no usable intensity range (p0.01={lo:g}, p99.9={hi:g})")
    out = np.clip(image.astype(np.float32, copy=False), lo, hi)
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    return out
