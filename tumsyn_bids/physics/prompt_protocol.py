"""Which acquisition a prompt asks for: target contrast, sequence family and full timing.

The physics-structured model renders its output with the signal equations, so it needs a complete,
valid :class:`~tumsyn_bids.protocols.Protocol`. A prompt carries TR/TE/TI/FA (any may be
``None``) and the modality; the sequence family is not written in the prompt and is inferred:

- flip angle ``T2var``                                   -> 3D variable-flip-angle TSE (``space``)
- a TI, T1-weighted modality, TE < 10 ms, FA <= 30 deg   -> ``mprage``
- any other TI, or a FLAIR prompt without one              -> inversion recovery (``ir``)
- no TI, FA < 60 deg or TR < 200 ms                       -> spoiled gradient echo (``gre``)
- no TI, otherwise                                        -> spin echo (``se``)
- no timing at all                                        -> the default protocol of the contrast

Missing values come from the contrast's default protocol at the nearest field strength when that
protocol has the same sequence family, else from family defaults below. A combination that the
physics cannot simulate (TI >= TR, TE >= TR, ...) falls back to the default protocol of the
contrast, and the reason is returned so that it can be logged. Pure: no numpy, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tumsyn_bids.contrasts import MODALITY_TO_CONTRAST, get_contrast
from tumsyn_bids.prompts import T2VAR, Prompt
from tumsyn_bids.protocols import Protocol, default_protocol

T1_MODALITIES = ("T1w", "T1CE")

# Values used when the prompt leaves a field empty and the contrast's default protocol is of
# another sequence family (times in ms, flip angle in degrees).
FAMILY_DEFAULTS: dict[str, dict[str, float | str | None]] = {
    "mprage": {"tr_ms": 2300.0, "te_ms": 2.3, "ti_ms": 900.0, "flip_angle": 9.0},
    "se": {"tr_ms": 5000.0, "te_ms": 100.0, "ti_ms": None, "flip_angle": 90.0},
    "ir": {"tr_ms": 9000.0, "te_ms": 90.0, "ti_ms": 2500.0, "flip_angle": 150.0},
    "gre": {"tr_ms": 700.0, "te_ms": 20.0, "ti_ms": None, "flip_angle": 20.0},
    "space": {"tr_ms": 3200.0, "te_ms": 563.0, "ti_ms": None, "flip_angle": T2VAR},
}


@dataclass(frozen=True)
class TargetAcquisition:
    """The resolved target: contrast name, full protocol, and why defaults were used (if they were)."""

    contrast: str
    protocol: Protocol
    note: str = ""


def contrast_of_modality(modality: str) -> str:
    """Contrast name of a prompt modality word (``PD`` -> ``PDw``, ``T2*w`` -> ``T2starw``)."""
    if modality in MODALITY_TO_CONTRAST:
        return MODALITY_TO_CONTRAST[modality]
    return get_contrast(modality).name  # raises KeyError naming the known contrasts


def infer_sequence(contrast: str, tr: float | None, te: float | None, ti: float | None,
                   flip: float | str | None) -> str | None:
    """Sequence family implied by the given timing, or None when the prompt gives no timing."""
    if flip == T2VAR:
        return "space"
    if ti is None and contrast == "FLAIR" and (tr is not None or te is not None or flip is not None):
        return "ir"  # FLAIR is fluid-attenuated by an inversion: the prompt just lacks the TI
    if ti is not None:
        t1_like = contrast in T1_MODALITIES and (te is None or te < 10.0)
        if t1_like and (flip is None or (isinstance(flip, float) and flip <= 30.0)):
            return "mprage"
        return "ir"
    if tr is None and te is None and flip is None:
        return None
    if isinstance(flip, float) and flip < 60.0:
        return "gre"
    if tr is not None and tr < 200.0:
        return "gre"
    return "se"


def target_acquisition(prompt: Prompt) -> TargetAcquisition:
    """The full protocol a prompt asks for (see the module docstring for the rules)."""
    from tumsyn_bids.physics.signals import PhysicsParameterError, validate_protocol

    contrast = contrast_of_modality(prompt.modality)
    default = default_protocol(contrast, prompt.field_strength)
    field = float(prompt.field_strength) if prompt.field_strength else default.field_strength
    flip = prompt.flip_angle
    if isinstance(flip, (int, float)):
        flip = float(flip)
    elif isinstance(flip, str) and flip != T2VAR:
        flip = None
    sequence = infer_sequence(contrast, prompt.tr_ms, prompt.te_ms, prompt.ti_ms, flip)
    base = replace(default, field_strength=field, vendor=prompt.vendor or default.vendor)
    if sequence is None:
        return TargetAcquisition(contrast, base, "no timing in the prompt: default protocol")
    fill = ({"tr_ms": default.tr_ms, "te_ms": default.te_ms, "ti_ms": default.ti_ms, "flip_angle": default.flip_angle}
            if sequence == default.sequence else FAMILY_DEFAULTS[sequence])
    given = {"tr_ms": prompt.tr_ms, "te_ms": prompt.te_ms, "ti_ms": prompt.ti_ms, "flip_angle": flip}
    values = {k: (given[k] if given[k] is not None else fill[k]) for k in given}
    if sequence in ("se", "gre", "space"):
        values["ti_ms"] = None
    protocol = replace(base, sequence=sequence, **values)
    try:
        validate_protocol(protocol)
    except PhysicsParameterError as exc:
        return TargetAcquisition(contrast, base, f"prompt timing not simulable ({exc}): default protocol")
    filled = [k for k in given if given[k] is None and values[k] is not None]
    note = f"filled from defaults: {', '.join(filled)}" if filled else ""
    return TargetAcquisition(contrast, protocol, note)


def source_acquisition(prompt: Prompt) -> TargetAcquisition | None:
    """How the source image was acquired, or None when its prompt carries no usable timing.

    Unlike a target, nothing is filled from defaults: a guess about the source would mislead the
    network, which can read an unknown contrast from the image itself.
    """
    from tumsyn_bids.physics.signals import PhysicsParameterError, validate_protocol

    try:
        contrast = contrast_of_modality(prompt.modality)
    except KeyError:
        return None
    flip = prompt.flip_angle
    if isinstance(flip, (int, float)):
        flip = float(flip)
    elif isinstance(flip, str) and flip != T2VAR:
        flip = None
    if prompt.tr_ms is None or prompt.te_ms is None:
        return None
    sequence = infer_sequence(contrast, prompt.tr_ms, prompt.te_ms, prompt.ti_ms, flip)
    if sequence in ("ir", "mprage") and prompt.ti_ms is None:
        return None
    if flip is None:
        flip = 90.0 if sequence in ("se", "ir") else None
    if flip is None:
        return None
    protocol = Protocol(contrast, sequence, float(prompt.field_strength or 3.0), float(prompt.tr_ms),
                        float(prompt.te_ms), prompt.ti_ms if sequence in ("ir", "mprage") else None, flip)
    try:
        validate_protocol(protocol)
    except PhysicsParameterError:
        return None
    return TargetAcquisition(contrast, protocol)
