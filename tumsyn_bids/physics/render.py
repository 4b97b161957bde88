"""Noise-free rendering: per-class signals from the sequence equations, painted on the phantom.

Rendering is linear in the class fractions (signal = sum_k fraction_k * S_k), so a deformed or
resampled phantom renders the same as the deformed/resampled rendering: the simulator renders
once on the phantom grid and warps the image, which is much cheaper than warping K maps.

Approximations for contrasts that T1/T2/T2*/PD alone cannot produce (labelled as such):
- ``T1CE`` (contrast-enhanced T1w): T1 shortened where gadolinium reaches tissue,
  1/T1' = 1/T1 + r1 [Gd] (vessels, choroid plexus, dura, muscle, scalp; brain parenchyma behind an
  intact blood-brain barrier gets none), then the protocol's sequence (MPRAGE).
- ``SWI``: the T2*-weighted spoiled-GRE magnitude multiplied by a phase-mask-like term
  (1 - 0.5 s)^4, s in [0, 1] the class's venous/iron susceptibility weight. No phase image.
"""

from __future__ import annotations

import numpy as np

from tumsyn_bids.physics.tissues import TissueProperties
from tumsyn_bids.protocols import Protocol

SWI_PHASE_WEIGHT = 0.5
SWI_PHASE_POWER = 4


def tissue_signals(properties: TissueProperties, protocol: Protocol, contrast: str | None = None) -> np.ndarray:
    """(K,) noise-free signal of each phantom class for ``protocol`` (air renders 0)."""
    from tumsyn_bids.physics.signals import contrast_signal

    def f64(x):
        return np.asarray(x, dtype=np.float64)

    signal = contrast_signal(protocol, f64(properties.pd), f64(properties.t1), f64(properties.t2), f64(properties.t2s),
                             gd_r1=f64(properties.gd_relaxivity * np.asarray(properties.gd_mm)) / 1000.0,
                             susceptibility=f64(properties.susceptibility), contrast=contrast)
    return np.where(properties.pd > 0, signal, 0.0)


def render(phantom, properties: TissueProperties, protocol: Protocol, contrast: str | None = None) -> np.ndarray:
    """Noise-free float32 image of ``phantom`` with ``properties`` under ``protocol``, on the phantom grid."""
    if len(properties.classes) != len(phantom.classes):
        raise ValueError("tissue properties were drawn for a different phantom (class count differs)")
    signals = tissue_signals(properties, protocol, contrast).astype(np.float32)
    if phantom.labels is not None:
        return signals[phantom.labels]
    k = phantom.probs.shape[0]
    flat = phantom.probs.reshape(k, -1)
    return (signals @ flat).reshape(phantom.shape).astype(np.float32, copy=False)
