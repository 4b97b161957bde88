"""Closed-form MR signal equations (numpy, vectorised over tissues or voxels).

All times are in milliseconds, flip angles in degrees, proton density ``pd`` is relative
(CSF = 1). Every function broadcasts over array arguments and returns the magnitude signal in
units of the fully relaxed magnetisation ``pd``. The relations are the textbook ones (Haacke et
al., *MRI: Physical Principles and Sequence Design*; Bernstein et al., *Handbook of MRI Pulse
Sequences*), re-derived here; assumptions are stated per function. Common assumptions:
perfect spoiling of transverse magnetisation between repetitions, no diffusion, no magnetisation
transfer, no flow, a single echo read at ``te`` (turbo/fast spin echo uses its effective TE).

Impossible parameters raise :class:`PhysicsParameterError` (a ``UsageError`` and ``ValueError``)
with one line naming the parameter; :func:`validate_protocol` checks a whole protocol.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from tumsyn_bids.errors import UsageError
from tumsyn_bids.protocols import SEQUENCES, Protocol

ArrayLike = np.ndarray | float

T2VAR = "T2var"

# 3D variable-flip-angle TSE (SPACE/CUBE/VISTA, the "T2var" case). Its nominal "equivalent" TE
# (e.g. 563 ms) is not the TE of a single echo: the flip-angle train keeps the signal in a
# mixed T1/T2 pseudo steady state, and the resulting T2 contrast resembles a conventional TSE at a
# much shorter effective TE (about 100-150 ms for TE_equiv 500-600 ms; Busse et al. MRM 2006,
# Mugler, JMRI 2014). We model it as a spin echo with TE_eff = SPACE_TE_FACTOR * TE_equiv and
# T1 recovery over TR - TE_equiv (the train occupies roughly 2 * TE_equiv). Uncalibrated
# approximation: it keeps the physics monotonic (longer TE_equiv -> heavier T2 weighting).
SPACE_TE_FACTOR = 0.2

# MPRAGE readout defaults (not part of the TUMSyn prompt): echo spacing and number of
# excitations per inversion (one partition line per excitation, linear ordering, k-space centre
# at the middle of the train, so TI is measured from the inversion to the centre; Siemens
# convention). The train is shortened when TI or TR - TI is too short to hold it.
MPRAGE_READOUTS = 176
MPRAGE_MIN_ECHO_SPACING_MS = 7.0


class PhysicsParameterError(UsageError, ValueError):
    """An impossible sequence parameter (negative TR, TI > TR for IR, flip angle 0, ...)."""


def _arr(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------- equations


def spin_echo(pd: ArrayLike, t1: ArrayLike, t2: ArrayLike, tr: float, te: float, *, exact: bool = True) -> np.ndarray:
    """90-180 spin echo (SE/TSE at its effective TE).

    ``exact=True`` keeps the refocusing pulse's effect on T1 recovery:
    S = PD (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1)) exp(-TE/T2); ``exact=False`` uses the
    TR >> TE form S = PD (1 - exp(-TR/T1)) exp(-TE/T2).
    """
    _check_tr_te(tr, te)
    pd, t1, t2 = _arr(pd), _arr(t1), _arr(t2)
    if exact:
        recovery = 1.0 - 2.0 * np.exp(-(tr - te / 2.0) / t1) + np.exp(-tr / t1)
    else:
        recovery = 1.0 - np.exp(-tr / t1)
    return pd * np.abs(recovery) * np.exp(-te / t2)


def spoiled_gradient_echo(
    pd: ArrayLike, t1: ArrayLike, t2s: ArrayLike, tr: float, te: float, flip_angle: float
) -> np.ndarray:
    """Spoiled gradient echo (FLASH/SPGR/T1-FFE) in steady state.

    S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2*), E1 = exp(-TR/T1). Ideal spoiling.
    """
    _check_tr_te(tr, te)
    _check_flip(flip_angle)
    pd, t1, t2s = _arr(pd), _arr(t1), _arr(t2s)
    alpha = math.radians(float(flip_angle))
    e1 = np.exp(-tr / t1)
    return pd * math.sin(alpha) * (1.0 - e1) / (1.0 - math.cos(alpha) * e1) * np.exp(-te / t2s)


def ernst_angle(tr: float, t1: ArrayLike) -> np.ndarray:
    """Flip angle (degrees) maximising the spoiled gradient-echo signal: arccos(exp(-TR/T1))."""
    return np.degrees(np.arccos(np.exp(-float(tr) / _arr(t1))))


def inversion_recovery(
    pd: ArrayLike,
    t1: ArrayLike,
    t2: ArrayLike,
    tr: float,
    te: float,
    ti: float,
    *,
    efficiency: float = 1.0,
    magnitude: bool = True,
) -> np.ndarray:
    """Inversion recovery with a spin-echo readout (IR-SE/TSE: FLAIR, STIR).

    S = PD |1 - (1 + eta) exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2), ``eta`` the inversion
    efficiency (1 = perfect 180). Magnitude reconstruction (``magnitude=False`` keeps the sign).
    Assumes the readout fully saturates Mz each TR (long echo train), so recovery restarts from 0.
    """
    _check_tr_te(tr, te)
    _check_ti(ti, tr, "inversion recovery")
    pd, t1, t2 = _arr(pd), _arr(t1), _arr(t2)
    mz = 1.0 - (1.0 + efficiency) * np.exp(-ti / t1) + np.exp(-tr / t1)
    if magnitude:
        mz = np.abs(mz)
    return pd * mz * np.exp(-te / t2)


def ir_null_time(t1: ArrayLike, tr: float | None = None, *, efficiency: float = 1.0) -> np.ndarray:
    """Inversion time (ms) nulling a tissue of longitudinal relaxation ``t1``.

    TI_null = T1 [ln(1 + eta) - ln(1 + exp(-TR/T1))]; with TR -> infinity (``tr=None``) and a
    perfect inversion this is T1 ln 2.
    """
    t1 = _arr(t1)
    e1 = 0.0 if tr is None else np.exp(-float(tr) / t1)
    return t1 * (np.log1p(efficiency) - np.log1p(e1))


def mprage_timing(tr: float, te: float, ti: float) -> tuple[float, int]:
    """(echo spacing in ms, number of readouts per inversion) used by :func:`mprage`."""
    spacing = max(MPRAGE_MIN_ECHO_SPACING_MS, 2.0 * float(te) + 2.5)
    room = min(float(ti), float(tr) - float(ti))  # the half-train must fit before and after TI
    half = int(min(MPRAGE_READOUTS // 2, max(1, math.floor(0.95 * room / spacing))))
    return spacing, 2 * half


def mprage(
    pd: ArrayLike,
    t1: ArrayLike,
    t2s: ArrayLike,
    tr: float,
    te: float,
    ti: float,
    flip_angle: float,
    *,
    efficiency: float = 0.96,
    echo_spacing: float | None = None,
    readouts: int | None = None,
) -> np.ndarray:
    """MPRAGE (3D inversion-prepared spoiled gradient echo) in its steady state.

    One cycle of length TR: inversion (Mz -> -eta Mz), free recovery to the first of
    ``readouts`` RAGE excitations spaced ``echo_spacing`` (each: Mz -> cos(a) Mz, then recovery),
    the k-space centre sampled at TI after the inversion (middle of a linear train), then
    recovery to the next inversion. Each step maps Mz affinely (Mz -> a Mz + b), so the cycle is
    one affine map whose fixed point is the steady state; the signal is
    sin(a) Mz(centre) exp(-TE/T2*). Ideal spoiling, no slice profile.
    """
    _check_tr_te(tr, te)
    _check_ti(ti, tr, "MPRAGE")
    _check_flip(flip_angle)
    pd, t1, t2s = _arr(pd), _arr(t1), _arr(t2s)
    spacing, n = mprage_timing(tr, te, ti)
    if echo_spacing is not None:
        spacing = float(echo_spacing)
    if readouts is not None:
        n = int(readouts)
    half = n // 2
    t_first = ti - half * spacing
    t_delay = tr - t_first - n * spacing
    if t_first < 0 or t_delay < 0:
        raise PhysicsParameterError(
            f"MPRAGE readout train ({n} x {spacing:.1f} ms) does not fit TI {ti} ms within TR {tr} ms"
        )
    cos_a = math.cos(math.radians(float(flip_angle)))

    def recover(a, b, t):  # compose with free recovery over t (M0 = 1)
        e = np.exp(-t / t1)
        return a * e, b * e + (1.0 - e)

    def pulses(a, b, k):  # compose with k x (excitation, recovery over the echo spacing)
        q = cos_a * np.exp(-spacing / t1)
        r = 1.0 - np.exp(-spacing / t1)
        qk = q**k
        geometric = np.where(np.isclose(q, 1.0), k, (1.0 - qk) / np.where(np.isclose(q, 1.0), 1.0, 1.0 - q))
        return a * qk, b * qk + r * geometric

    # Affine map from Mz just before the inversion to Mz just before the centre excitation.
    a_c, b_c = -efficiency * np.ones_like(t1), np.zeros_like(t1)
    a_c, b_c = recover(a_c, b_c, t_first)
    a_c, b_c = pulses(a_c, b_c, half)
    # Continue to the end of the cycle.
    a_e, b_e = pulses(a_c, b_c, n - half)
    a_e, b_e = recover(a_e, b_e, t_delay)
    mz0 = b_e / (1.0 - a_e)
    mz_centre = a_c * mz0 + b_c
    return pd * np.abs(mz_centre) * math.sin(math.radians(float(flip_angle))) * np.exp(-te / t2s)


def space_t2var(pd: ArrayLike, t1: ArrayLike, t2: ArrayLike, tr: float, te: float) -> np.ndarray:
    """3D variable-flip-angle TSE ("T2var"): documented approximation, see ``SPACE_TE_FACTOR``.

    S = PD (1 - exp(-(TR - TE)/T1)) exp(-TE_eff/T2) with TE_eff = SPACE_TE_FACTOR * TE.
    """
    _check_tr_te(tr, te)
    pd, t1, t2 = _arr(pd), _arr(t1), _arr(t2)
    te_eff = SPACE_TE_FACTOR * te
    return pd * (1.0 - np.exp(-(tr - te) / t1)) * np.exp(-te_eff / t2)


# --------------------------------------------------------------------------- validation


def _check_tr_te(tr: float, te: float) -> None:
    if tr is None or not np.isfinite(tr) or tr <= 0:
        raise PhysicsParameterError(f"repetition time TR must be a positive number of ms, got {tr}")
    if te is None or not np.isfinite(te) or te < 0:
        raise PhysicsParameterError(f"echo time TE must be >= 0 ms, got {te}")
    if te >= tr:
        raise PhysicsParameterError(f"echo time TE ({te} ms) must be shorter than TR ({tr} ms)")


def _check_ti(ti: float | None, tr: float, what: str) -> None:
    if ti is None or not np.isfinite(ti) or ti <= 0:
        raise PhysicsParameterError(f"{what} needs a positive inversion time TI in ms, got {ti}")
    if ti >= tr:
        raise PhysicsParameterError(f"inversion time TI ({ti} ms) must be shorter than TR ({tr} ms) for {what}")


def _check_flip(flip_angle: float | str | None) -> None:
    if isinstance(flip_angle, str) or flip_angle is None:
        raise PhysicsParameterError(f"flip angle must be a number of degrees, got {flip_angle!r}")
    if not np.isfinite(flip_angle) or not 0 < float(flip_angle) <= 180:
        raise PhysicsParameterError(f"flip angle must be in (0, 180] degrees, got {flip_angle}")


def validate_protocol(protocol: Protocol) -> None:
    """Raise :class:`PhysicsParameterError` when ``protocol`` cannot be simulated."""
    if protocol.sequence not in SEQUENCES:
        raise PhysicsParameterError(
            f"unknown sequence {protocol.sequence!r}; choose from {', '.join(SEQUENCES)}"
        )
    if protocol.field_strength is None or not protocol.field_strength > 0:
        raise PhysicsParameterError(f"field strength must be positive (tesla), got {protocol.field_strength}")
    _check_tr_te(protocol.tr_ms, protocol.te_ms)
    seq = protocol.sequence
    if seq in ("ir", "mprage"):
        _check_ti(protocol.ti_ms, protocol.tr_ms, "inversion recovery" if seq == "ir" else "MPRAGE")
    elif protocol.ti_ms is not None:
        raise PhysicsParameterError(f"sequence {seq!r} has no inversion, but TI = {protocol.ti_ms} ms was given")
    if protocol.flip_angle == T2VAR:
        if seq not in ("space", "se"):
            raise PhysicsParameterError(f"flip angle 'T2var' only applies to 3D TSE (space), not {seq!r}")
    else:
        _check_flip(protocol.flip_angle)
    if seq == "mprage":
        spacing, n = mprage_timing(protocol.tr_ms, protocol.te_ms, protocol.ti_ms)
        if n < 2:
            raise PhysicsParameterError(
                f"MPRAGE TI {protocol.ti_ms} ms / TR {protocol.tr_ms} ms leave no room for a readout train"
            )


def dispatch(protocol: Protocol, equations, pd, t1, t2, t2s):
    """The one sequence dispatcher: ``protocol``'s equation taken from ``equations``, after validation.

    ``equations`` is a namespace with ``spin_echo``, ``spoiled_gradient_echo``, ``inversion_recovery``,
    ``space_t2var`` and ``mprage`` (this module for numpy, :mod:`.torch_signals` for torch), so both
    array libraries share one protocol -> equation mapping. ``se`` with flip angle ``T2var`` and
    ``space`` both use the variable-flip-angle TSE approximation.
    """
    validate_protocol(protocol)
    p = protocol
    if p.sequence == "space" or (p.sequence == "se" and p.flip_angle == T2VAR):
        return equations.space_t2var(pd, t1, t2, p.tr_ms, p.te_ms)
    if p.sequence == "se":
        return equations.spin_echo(pd, t1, t2, p.tr_ms, p.te_ms)
    if p.sequence == "gre":
        return equations.spoiled_gradient_echo(pd, t1, t2s, p.tr_ms, p.te_ms, float(p.flip_angle))
    if p.sequence == "ir":
        return equations.inversion_recovery(pd, t1, t2, p.tr_ms, p.te_ms, float(p.ti_ms))
    return equations.mprage(pd, t1, t2s, p.tr_ms, p.te_ms, float(p.ti_ms), float(p.flip_angle))


def contrast_signal(protocol: Protocol, pd, t1, t2, t2s, *, gd_r1=None, susceptibility=None,
                    contrast: str | None = None, equations=None):
    """Signal under ``protocol`` with the T1CE and SWI steps of :mod:`.render` (numpy or torch).

    ``gd_r1``: T1 shortening 1/T1' - 1/T1 in 1/ms (applied for ``T1CE``); ``susceptibility`` in
    [0, 1] (the SWI phase-mask weight, applied for ``SWI``); ``equations`` as in :func:`dispatch`
    (default: this module, numpy).
    """
    from tumsyn_bids.physics.render import SWI_PHASE_POWER, SWI_PHASE_WEIGHT

    contrast = contrast or protocol.contrast
    if contrast == "T1CE" and gd_r1 is not None:
        t1 = 1.0 / (1.0 / t1 + gd_r1)
    signal = dispatch(protocol, equations or sys.modules[__name__], pd, t1, t2, t2s)
    if contrast == "SWI" and susceptibility is not None:
        signal = signal * (1.0 - SWI_PHASE_WEIGHT * susceptibility) ** SWI_PHASE_POWER
    return signal


def sequence_signal(protocol: Protocol, pd: ArrayLike, t1: ArrayLike, t2: ArrayLike, t2s: ArrayLike) -> np.ndarray:
    """Signal of tissues with the given relaxation for ``protocol`` (its sequence's equation)."""
    return dispatch(protocol, sys.modules[__name__], _arr(pd), _arr(t1), _arr(t2), _arr(t2s))
