"""The signal equations of :mod:`.signals` in torch: differentiable, any device, any shape.

Same equations, same assumptions and same protocol conventions as the numpy module (which stays
the reference: ``tests/physics/test_torch_signals.py`` checks both agree). Tissue parameters are
tensors that broadcast together; sequence parameters are Python floats (one protocol per call).
Used by the physics-structured model (render a target contrast from predicted tissue maps) and
by the torch training simulator. torch is imported here, so import this module lazily.
"""

from __future__ import annotations

import math
import sys

import torch

from tumsyn_bids.physics.signals import SPACE_TE_FACTOR, contrast_signal, dispatch, mprage_timing
from tumsyn_bids.protocols import Protocol

Tensor = torch.Tensor


def spin_echo(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float) -> Tensor:
    """90-180 spin echo with the refocusing pulse's effect on T1 recovery (``signals.spin_echo``)."""
    recovery = 1.0 - 2.0 * torch.exp(-(tr - te / 2.0) / t1) + torch.exp(-tr / t1)
    return pd * recovery.abs() * torch.exp(-te / t2)


def spoiled_gradient_echo(pd: Tensor, t1: Tensor, t2s: Tensor, tr: float, te: float, flip_angle: float) -> Tensor:
    """Spoiled gradient echo in steady state (``signals.spoiled_gradient_echo``)."""
    alpha = math.radians(flip_angle)
    e1 = torch.exp(-tr / t1)
    return pd * math.sin(alpha) * (1.0 - e1) / (1.0 - math.cos(alpha) * e1) * torch.exp(-te / t2s)


def inversion_recovery(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float, ti: float,
                       efficiency: float = 1.0) -> Tensor:
    """Magnitude inversion recovery with a spin-echo readout (``signals.inversion_recovery``)."""
    mz = 1.0 - (1.0 + efficiency) * torch.exp(-ti / t1) + torch.exp(-tr / t1)
    return pd * mz.abs() * torch.exp(-te / t2)


def space_t2var(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float) -> Tensor:
    """3D variable-flip-angle TSE approximation (``signals.space_t2var``)."""
    return pd * (1.0 - torch.exp(-(tr - te) / t1)) * torch.exp(-SPACE_TE_FACTOR * te / t2)


def mprage(pd: Tensor, t1: Tensor, t2s: Tensor, tr: float, te: float, ti: float, flip_angle: float,
           efficiency: float = 0.96) -> Tensor:
    """MPRAGE steady state as one affine map per cycle (``signals.mprage``, default readout)."""
    spacing, n = mprage_timing(tr, te, ti)
    half = n // 2
    t_first = ti - half * spacing
    t_delay = tr - t_first - n * spacing
    cos_a = math.cos(math.radians(flip_angle))

    def recover(a, b, t):
        e = torch.exp(-t / t1)
        return a * e, b * e + (1.0 - e)

    q = cos_a * torch.exp(-spacing / t1)
    r = 1.0 - torch.exp(-spacing / t1)
    # q < 1 for any flip angle > 0 and finite T1; clamp keeps the division finite in low precision.
    one_minus_q = (1.0 - q).clamp_min(1e-12)

    def pulses(a, b, k):
        qk = q**k
        return a * qk, b * qk + r * (1.0 - qk) / one_minus_q

    a_c = torch.full_like(t1, -efficiency)
    b_c = torch.zeros_like(t1)
    a_c, b_c = recover(a_c, b_c, t_first)
    a_c, b_c = pulses(a_c, b_c, half)
    a_e, b_e = pulses(a_c, b_c, n - half)
    a_e, b_e = recover(a_e, b_e, t_delay)
    mz0 = b_e / (1.0 - a_e)
    mz_centre = a_c * mz0 + b_c
    return pd * mz_centre.abs() * math.sin(math.radians(flip_angle)) * torch.exp(-te / t2s)


def sequence_signal(protocol: Protocol, pd: Tensor, t1: Tensor, t2: Tensor, t2s: Tensor) -> Tensor:
    """Signal for ``protocol``: the shared dispatcher :func:`signals.dispatch` over these equations."""
    return dispatch(protocol, sys.modules[__name__], pd, t1, t2, t2s)


def render_maps(protocol: Protocol, pd: Tensor, t1: Tensor, t2: Tensor, t2s: Tensor,
                gd_r1: Tensor | None = None, susceptibility: Tensor | None = None,
                contrast: str | None = None) -> Tensor:
    """Image of tissue maps under ``protocol``, with the T1CE and SWI approximations of
    :mod:`.render` (``gd_r1``: T1 shortening 1/T1' - 1/T1 in 1/ms; ``susceptibility`` in [0, 1])."""
    return contrast_signal(protocol, pd, t1, t2, t2s, gd_r1=gd_r1, susceptibility=susceptibility,
                           contrast=contrast, equations=sys.modules[__name__])
