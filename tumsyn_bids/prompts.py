"""The TUMSyn text prompt: a pure value object, its exact text form, and the parser back.

The published template (the TUMSyn paper's text prompts, as the official checkpoints were trained)::

    Age: 16; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (0.8, 0.8, 0.8); \
Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)

Numbers carry one decimal, unknown values are the word ``None``, there are two spaces before the
parameter tuple, and the flip angle may be the word ``T2var`` (3D variable-flip-angle T2w).
The prompt always describes the image to be GENERATED.
This module is pure: no torch, no nipype, no file access. It is the one place where BIDS sidecar
metadata and demographics become a prompt (:func:`target_prompt`, :func:`source_prompt`): the
planner, ``tumsyn prompts`` and the training data path (``training/data_bids.py``) all call it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

T2VAR = "T2var"
_PARAM_LEAD = "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  "


@dataclass(frozen=True)
class Prompt:
    """Fields of one prompt. Times in milliseconds, flip angle in degrees (or ``"T2var"``)."""

    modality: str
    voxel_size: tuple[float, float, float]
    age: int | None = None
    sex: str | None = None  # "M" or "F"
    field_strength: float | None = None  # tesla
    vendor: str | None = None  # normalised: Siemens, GE, Philips, ...
    tr_ms: float | None = None
    te_ms: float | None = None
    ti_ms: float | None = None
    flip_angle: float | str | None = None

    def text(self) -> str:
        """The prompt string exactly as the published model was trained on."""
        voxel = ", ".join(_num(v) for v in self.voxel_size)
        params = ", ".join(
            (_num(self.tr_ms), _num(self.te_ms), _num(self.ti_ms), _flip(self.flip_angle))
        )
        return (
            f"Age: {_age(self.age)}; Gender: {self.sex or 'None'}; "
            f"Scanner: {_num(self.field_strength)} {self.vendor or 'None'}; "
            f"Modality: {self.modality}; Voxel size: ({voxel}); {_PARAM_LEAD}({params})"
        )

    def with_(self, **changes) -> "Prompt":
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.text()


def _num(value: float | None) -> str:
    return "None" if value is None else f"{float(value):.1f}"


def _age(value: int | float | None) -> str:
    # Completed years, as ages are conventionally stated (21.9 years old is "21").
    return "None" if value is None else str(int(float(value)))


def _flip(value: float | str | None) -> str:
    if isinstance(value, str):
        return value
    return _num(value)


_PROMPT_RE = re.compile(
    r"^Age: (?P<age>[^;]+); Gender: (?P<sex>[^;]+); Scanner: (?P<fs>\S+) (?P<vendor>[^;]+); "
    r"Modality: (?P<modality>[^;]+); Voxel size: \((?P<voxel>[^)]*)\); "
    + re.escape(_PARAM_LEAD)
    + r"\((?P<params>[^)]*)\)$"
)


def parse_prompt(text: str) -> Prompt:
    """Turn a prompt string back into a :class:`Prompt` (inverse of :meth:`Prompt.text`)."""
    match = _PROMPT_RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a TUMSyn prompt: {text!r}")
    voxel = tuple(_parse_float(v) for v in match["voxel"].split(","))
    params = [p.strip() for p in match["params"].split(",")]
    if len(voxel) != 3 or len(params) != 4 or any(v is None for v in voxel):
        raise ValueError(f"malformed voxel size or parameters in prompt: {text!r}")
    flip: float | str | None = _parse_float(params[3])
    if flip is None and params[3] != "None":
        flip = params[3]  # a word such as "T2var"
    age = _parse_float(match["age"])
    return Prompt(
        modality=match["modality"].strip(),
        voxel_size=voxel,  # type: ignore[arg-type]
        age=None if age is None else int(age),
        sex=None if match["sex"].strip() == "None" else match["sex"].strip(),
        field_strength=_parse_float(match["fs"]),
        vendor=None if match["vendor"].strip() == "None" else match["vendor"].strip(),
        tr_ms=_parse_float(params[0]),
        te_ms=_parse_float(params[1]),
        ti_ms=_parse_float(params[2]),
        flip_angle=flip,
    )


def _parse_float(token: str) -> float | None:
    token = token.strip()
    if token == "None":
        return None
    try:
        return float(token)
    except ValueError:
        return None


# --- from BIDS metadata to prompt fields (README: Prompts) -------------------------------------

# Manufacturer spellings seen in BIDS sidecars (dcm2niix copies the DICOM Manufacturer tag),
# matched on lower-case substrings, first hit wins.
_VENDORS: tuple[tuple[str, str], ...] = (
    ("siemens", "Siemens"),
    ("philips", "Philips"),
    ("general electric", "GE"),
    ("ge medical", "GE"),
    ("ge healthcare", "GE"),
    ("gehc", "GE"),
    ("toshiba", "Toshiba"),
    ("canon", "Canon"),
    ("hitachi", "Hitachi"),
    ("fujifilm", "Hitachi"),
    ("united imaging", "UIH"),
    ("uih", "UIH"),
    ("bruker", "Bruker"),
)

# Above this (seconds) a reported TR cannot be the per-excitation TR of a prepared 3D sequence.
_EXCITATION_TR_MAX_S = 0.1


def normalise_vendor(manufacturer: str | None) -> str | None:
    """``"SIEMENS"``, ``"Siemens Healthineers"`` -> ``"Siemens"``; ``"GE MEDICAL SYSTEMS"`` -> ``"GE"``.

    Unknown manufacturers keep their own spelling (whitespace collapsed); empty means ``None``.
    """
    if manufacturer is None:
        return None
    text = " ".join(str(manufacturer).split())
    if not text or text.lower() in ("n/a", "none", "unknown"):
        return None
    low = text.lower()
    if low == "ge" or low.startswith("ge "):
        return "GE"
    for needle, name in _VENDORS:
        if needle in low:
            return name
    return text


def seconds_to_ms(value: object) -> float | None:
    """BIDS seconds -> milliseconds; non-numbers and non-positive values -> ``None``."""
    number = _positive_float(value)
    return None if number is None else number * 1000.0


def _positive_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (list, tuple)):  # e.g. multi-echo EchoTime lists: take the first
        return _positive_float(value[0]) if value else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 and number == number else None


def is_inversion_prepared(metadata: dict) -> bool:
    """True when the sidecar describes an inversion-recovery-prepared acquisition."""
    if _positive_float(metadata.get("InversionTime")) is not None:
        return True
    scanning = metadata.get("ScanningSequence")
    parts = scanning if isinstance(scanning, list) else str(scanning or "").replace("\\", " ").split()
    return any(str(p).strip().upper() == "IR" for p in parts)


def is_variable_flip_angle(metadata: dict) -> bool:
    """True for 3D turbo-spin-echo with variable refocusing angles (SPACE, CUBE, VISTA)."""
    details = " ".join(
        str(metadata.get(key, "")) for key in ("SequenceName", "PulseSequenceDetails", "PulseSequenceName",
                                               "SeriesDescription", "ProtocolName")
    ).lower()
    if any(tag in details for tag in ("spc", "space", "cube", "vista", "tse_vfl")):
        return True
    scanning = str(metadata.get("ScanningSequence", "")).upper()
    return metadata.get("MRAcquisitionType") == "3D" and "SE" in scanning and "GR" not in scanning


@dataclass(frozen=True)
class Acquisition:
    """Prompt fields read from one sidecar (ms, degrees, tesla) plus notes on what was normalised."""

    field_strength: float | None = None
    vendor: str | None = None
    tr_ms: float | None = None
    te_ms: float | None = None
    ti_ms: float | None = None
    flip_angle: float | str | None = None
    notes: tuple[str, ...] = ()


def acquisition_from_sidecar(metadata: dict) -> Acquisition:
    """Read scanner and sequence parameters from merged BIDS sidecar metadata.

    Vendor quirks: GE writes the per-excitation TR (a few ms) as ``RepetitionTime`` for
    inversion-prepared 3D gradient echo (BRAVO); Philips may give only
    ``RepetitionTimeExcitation``. Neither is the sequence TR the prompt means, so TR becomes
    ``None`` (or ``RepetitionTimePreparation`` when present) and the reason is kept in ``notes``.
    """
    notes: list[str] = []
    vendor = normalise_vendor(metadata.get("Manufacturer"))
    field = _positive_float(metadata.get("MagneticFieldStrength"))
    prepared = is_inversion_prepared(metadata)
    tr_s = _positive_float(metadata.get("RepetitionTime"))
    tr_exc_s = _positive_float(metadata.get("RepetitionTimeExcitation"))
    tr_prep_s = _positive_float(metadata.get("RepetitionTimePreparation"))
    tr_ms: float | None = None
    if tr_s is not None and prepared and tr_s < _EXCITATION_TR_MAX_S:
        notes.append(
            f"{vendor or 'vendor'} reports RepetitionTime {tr_s * 1000:.3f} ms for an inversion-prepared "
            "sequence: that is the excitation TR, not the sequence TR"
        )
        tr_exc_s = tr_exc_s or tr_s
    elif tr_s is not None:
        tr_ms = tr_s * 1000.0
    elif tr_exc_s is not None and not prepared:
        tr_ms = tr_exc_s * 1000.0
        notes.append(f"TR taken from RepetitionTimeExcitation ({tr_ms:.3f} ms); RepetitionTime absent")
    elif tr_exc_s is not None:
        notes.append(
            f"only RepetitionTimeExcitation ({tr_exc_s * 1000:.3f} ms) for an inversion-prepared sequence: "
            "sequence TR unknown"
        )
    if tr_ms is None and tr_prep_s is not None:
        tr_ms = tr_prep_s * 1000.0
        notes.append(f"TR taken from RepetitionTimePreparation ({tr_ms:.1f} ms)")
    elif tr_ms is None and (tr_exc_s is not None):
        notes.append("TR written as None in the prompt")
    flip: float | str | None = _positive_float(metadata.get("FlipAngle"))
    if is_variable_flip_angle(metadata):
        notes.append(f"variable-flip-angle 3D TSE: flip angle written as {T2VAR} (sidecar: {flip})")
        flip = T2VAR
    return Acquisition(
        field_strength=field,
        vendor=vendor,
        tr_ms=tr_ms,
        te_ms=seconds_to_ms(metadata.get("EchoTime")),
        ti_ms=seconds_to_ms(metadata.get("InversionTime")),
        flip_angle=flip,
        notes=tuple(notes),
    )


# --- plausibility of the sidecar fields the prompt uses (BIDS units) ---------------------------

# field: (lowest, highest, unit, what a value above the range probably is)
SIDECAR_RANGES: dict[str, tuple[float, float, str, str | None]] = {
    "MagneticFieldStrength": (0.01, 20.0, "T", "millitesla or gauss instead of tesla?"),
    "RepetitionTime": (0.001, 30.0, "s", "milliseconds instead of seconds?"),
    "RepetitionTimeExcitation": (0.0005, 30.0, "s", "milliseconds instead of seconds?"),
    "RepetitionTimePreparation": (0.001, 30.0, "s", "milliseconds instead of seconds?"),
    "EchoTime": (0.00001, 1.0, "s", "milliseconds instead of seconds?"),
    "InversionTime": (0.001, 10.0, "s", "milliseconds instead of seconds?"),
    "FlipAngle": (0.01, 180.0, "degrees", None),
}
PROMPT_SIDECAR_FIELDS: tuple[str, ...] = (*SIDECAR_RANGES, "Manufacturer")


def _implausible(field: str, value: object) -> str | None:
    """Why ``value`` cannot be used for ``field`` (None when it is plausible)."""
    if field == "Manufacturer":
        return None if isinstance(value, str) else f"is {value!r}, not text"
    low, high, unit, above = SIDECAR_RANGES[field]
    if isinstance(value, list) and field == "EchoTime" and value:  # multi-echo: every echo must be plausible
        for item in value:
            problem = _implausible(field, item)
            if problem:
                return f"has an echo that {problem}"
        return None
    if isinstance(value, str):
        return f"is text {value!r}, not a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {value!r}, not a number"
    if value != value:
        return "is NaN"
    if not low <= value <= high:
        hint = f" ({above})" if above and value > high and low * 1000 <= value <= high * 1000 else ""
        return f"{value!r} is outside the plausible range {low:g}-{high:g} {unit}{hint}"
    return None


def check_sidecar(metadata: dict) -> tuple[dict, list[str]]:
    """Sidecar metadata with implausible prompt fields removed, and one problem line per field.

    Each removed field is unknown (``None``) in the prompt. A JSON ``null`` counts as absent.
    """
    clean = dict(metadata)
    problems = []
    for field in PROMPT_SIDECAR_FIELDS:
        if field not in clean:
            continue
        if clean[field] is None:
            del clean[field]
            continue
        problem = _implausible(field, clean[field])
        if problem:
            del clean[field]
            problems.append(f"{field} {problem}; treated as unknown (None in the prompt)")
    return clean, problems


def parse_flip_angle(value: str | float | None) -> float | str | None:
    """CLI flip angle: a number of degrees or the word ``T2var``."""
    if value is None or isinstance(value, float):
        return value
    text = str(value).strip()
    if text.lower() == T2VAR.lower():
        return T2VAR
    return float(text)


# --- sidecar + demographics -> prompt (planning, `tumsyn prompts` and training all use these) ---


def completed_years(age: float) -> int:
    """Age in completed years, as the README promises (45.5 -> 45, never rounded up)."""
    return int(math.floor(float(age)))


@dataclass(frozen=True)
class PromptOverrides:
    """Target prompt fields fixed on the command line (``--field-strength``, ``--vendor``, ``--tr/--te/--ti/--fa``)."""

    field_strength: float | None = None
    vendor: str | None = None
    tr: float | None = None  # ms
    te: float | None = None  # ms
    ti: float | None = None  # ms
    fa: float | str | None = None  # degrees or "T2var"


def _demographic_fields(demographics: dict) -> tuple[int | None, str | None]:
    age = demographics.get("age")
    return (None if age is None else completed_years(age)), demographics.get("sex")


def source_prompt(contrast: str, metadata: dict, voxel_size: tuple[float, float, float],
                  demographics: dict) -> Prompt:
    """The prompt describing an acquired image of ``contrast``: every acquisition field from its sidecar.

    ``metadata`` is the image's (merged) BIDS sidecar; implausible fields count as unknown
    (:func:`check_sidecar`). ``demographics``: ``{"age": years (may be fractional), "sex": "M"/"F"}``.
    """
    from tumsyn_bids.contrasts import CONTRASTS

    acq = acquisition_from_sidecar(check_sidecar(dict(metadata))[0])
    age, sex = _demographic_fields(demographics)
    return Prompt(
        modality=CONTRASTS[contrast].prompt_modality,
        voxel_size=tuple(voxel_size),  # type: ignore[arg-type]
        age=age,
        sex=sex,
        field_strength=acq.field_strength,
        vendor=acq.vendor,
        tr_ms=acq.tr_ms,
        te_ms=acq.te_ms,
        ti_ms=acq.ti_ms,
        flip_angle=acq.flip_angle,
    )


def target_prompt(
    target: str,
    source_metadata: dict,
    voxel_size: tuple[float, float, float],
    demographics: dict,
    overrides: PromptOverrides | None = None,
) -> tuple[Prompt, list[str], list[str]]:
    """The prompt describing the image to generate, the reason for each field, and metadata notes.

    Precedence: ``overrides`` (CLI flags) > the default ``target`` protocol at the source's field
    strength (:mod:`tumsyn_bids.protocols`) > the source's sidecar (field strength, vendor) >
    ``demographics`` (age, sex; with ``age_source``/``sex_source`` for the reasons).
    """
    from tumsyn_bids.contrasts import CONTRASTS
    from tumsyn_bids.protocols import default_protocol, nearest_field_strength

    o = overrides or PromptOverrides()
    reasons: list[str] = []
    acquisition = acquisition_from_sidecar(check_sidecar(dict(source_metadata))[0])
    field_strength = o.field_strength if o.field_strength is not None else acquisition.field_strength
    reasons.append(
        "field strength from --field-strength" if o.field_strength is not None
        else "field strength from the source sidecar" if field_strength is not None
        else "field strength unknown (no MagneticFieldStrength)"
    )
    vendor = normalise_vendor(o.vendor) if o.vendor else acquisition.vendor
    reasons.append(
        "vendor from --vendor" if o.vendor else "vendor from the source sidecar" if vendor
        else "vendor unknown (no Manufacturer)"
    )
    protocol = default_protocol(target, field_strength)
    given = {"tr": o.tr, "te": o.te, "ti": o.ti, "fa": o.fa}
    used = [name for name, value in given.items() if value is not None]
    bucket = nearest_field_strength(field_strength)
    reasons.append(
        f"TR/TE/TI/FA from the default {bucket:.1f} T {target} protocol"
        + (f" except --{'/--'.join(used)}" if used else "")
    )
    if demographics.get("age") is not None:
        reasons.append(f"age from {demographics.get('age_source')}")
    if demographics.get("sex") is not None:
        reasons.append(f"sex from {demographics.get('sex_source')}")
    age, sex = _demographic_fields(demographics)
    prompt = Prompt(
        modality=CONTRASTS[target].prompt_modality,
        voxel_size=tuple(voxel_size),  # type: ignore[arg-type]
        age=age,
        sex=sex,
        field_strength=field_strength,
        vendor=vendor,
        tr_ms=o.tr if o.tr is not None else protocol.tr_ms,
        te_ms=o.te if o.te is not None else protocol.te_ms,
        ti_ms=o.ti if o.ti is not None else protocol.ti_ms,
        flip_angle=o.fa if o.fa is not None else protocol.flip_angle,
    )
    return prompt, reasons, list(acquisition.notes)
