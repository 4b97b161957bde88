"""Fixtures of the physics tests: tiny label-map heads built here, the MNI phantom at 4 mm."""

from __future__ import annotations

import numpy as np
import pytest


def sphere_labels(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Nested spheres: ventricle CSF (4), WM (2), cortex (3), sulcal CSF (24), skull-like
    extra-cerebral label (502), scalp-like label (136), air (0); 2 mm voxels, RAS."""
    grid = np.indices((n, n, n)).astype(float) - (n - 1) / 2
    r = np.sqrt((grid**2).sum(axis=0)) / (n / 2)
    labels = np.zeros((n, n, n), dtype=np.int16)
    for radius, label in ((0.95, 136), (0.85, 502), (0.75, 24), (0.68, 3), (0.5, 2), (0.15, 4)):
        labels[r < radius] = label
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -(n - 1)
    return labels, affine


@pytest.fixture(scope="session")
def sphere_phantom():
    from tumsyn_bids.physics import labelmap_phantom

    labels, affine = sphere_labels()
    return labelmap_phantom(labels, affine, source="spheres")


@pytest.fixture(scope="session")
def mni4():
    from tumsyn_bids.physics import mni_phantom

    return mni_phantom(4.0)
