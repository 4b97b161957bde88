"""In-memory subjects for training: co-registered images of one head on one grid, with prompts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class PoolImage:
    """One contrast, intensities already normalised to [0,1], and the prompt that describes it."""

    contrast: str
    data: np.ndarray
    prompt: str


@dataclass
class PoolSubject:
    """Images of one subject on a shared grid (cropped to the brain) and its brain mask."""

    name: str
    images: list[PoolImage]
    mask: np.ndarray
    meta: dict = field(default_factory=dict)


def crop_to_mask(arrays: list[np.ndarray], mask: np.ndarray, margin: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Crop every array (and the mask) to the mask's bounding box plus ``margin`` voxels."""
    where = np.argwhere(mask)
    if where.size == 0:
        return arrays, mask
    lo = np.maximum(where.min(0) - margin, 0)
    hi = np.minimum(where.max(0) + margin + 1, mask.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return [np.ascontiguousarray(a[sl]) for a in arrays], np.ascontiguousarray(mask[sl])


class SubjectPool:
    """A fixed number of subjects from ``make_subject(rng)``, one replaced every ``refresh_every`` draws."""

    def __init__(self, make_subject: Callable[[np.random.Generator], PoolSubject], size: int,
                 refresh_every: int, rng: np.random.Generator):
        self._make = make_subject
        self._rng = rng
        self._refresh_every = max(int(refresh_every), 0)
        self._draws = 0
        self._next = 0
        self.subjects = [make_subject(rng) for _ in range(max(size, 1))]

    def draw(self) -> PoolSubject:
        """A random subject; refreshes the oldest one on schedule."""
        self._draws += 1
        if self._refresh_every and self._draws % self._refresh_every == 0:
            self.subjects[self._next] = self._make(self._rng)
            self._next = (self._next + 1) % len(self.subjects)
        return self.subjects[int(self._rng.integers(len(self.subjects)))]


class FixedPool:
    """A pool of subjects that never changes (real BIDS pairs)."""

    def __init__(self, subjects: list[PoolSubject], rng: np.random.Generator):
        self.subjects = subjects
        self._rng = rng

    def draw(self) -> PoolSubject:
        return self.subjects[int(self._rng.integers(len(self.subjects)))]
