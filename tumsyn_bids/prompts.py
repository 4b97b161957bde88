"""The TUMSyn text prompt: a pure value object, its exact text form, and the parser back.

The published template (reference: tumsyn-official-model.md section 1)::

    Age: 16; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (0.8, 0.8, 0.8); \
Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)

Numbers carry one decimal, unknown values are the word ``None``, there are two spaces before the
parameter tuple, and the flip angle may be the word ``T2var`` (3D variable-flip-angle T2w).
The prompt always describes the image to be GENERATED.
This module is pure: no torch, no nipype, no file access.
"""

from __future__ import annotations

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
    return "None" if value is None else str(int(round(float(value))))


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
