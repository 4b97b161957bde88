"""Default acquisition protocols per target contrast and field strength.

Used in two places: the planner fills the target's TR/TE/TI/FA into the prompt when the user
gives none (:func:`tumsyn_bids.prompts.target_prompt`), and the physics simulator renders images
with exactly these parameters, so the shipped model is trained on the protocols it will be asked for.
Times in milliseconds, flip angle in degrees; ``"T2var"`` marks 3D variable-flip-angle TSE.
Pure data: no numpy, no file access.

Sources (values rounded as the vendors' protocol PDFs and the BIDS examples give them):
- 3 T MPRAGE 2300/2.3/900/9: ADNI-3 and the ``eyetracking_fmri`` BIDS example (Siemens Prisma).
- 3 T T2w SPACE 3200/563/T2var: HCP Lifespan (Harms et al., NeuroImage 2018), the TUMSyn example prompt.
- 3 T FLAIR 9000/90/2500 (2D TSE-IR): ADNI-2 axial FLAIR; CSF null at TI ~ T1_csf ln 2 for TR >> T1.
- 3 T PDw TSE 3000/12/90: dual-echo PD/T2 TSE (e.g. ADNI-1 3 T axial PD/T2 FSE).
- 3 T T2*w GRE 700/20/20: ``ds004332`` BIDS example (Siemens Prisma).
- 3 T SWI 28/20/15: Haacke et al., AJNR 2009 (SWI technical considerations), 3 T recommendation.
- 1.5 T MPRAGE 2400/3.6/1000/8: ADNI-1 1.5 T protocol.
- 1.5 T T2w 5725/100/90 and PDw 5725/8/90: IXI dataset (Philips Gyroscan Intera 1.5 T).
- 1.5 T FLAIR 9000/110/2200: typical 1.5 T TSE-FLAIR (CSF T1 ~ 3.5-4.2 s at 1.5 T puts the null near 2.2-2.5 s).
- 1.5 T T2*w 600/20/20 and SWI 48/40/20: Haacke et al. 2009, 1.5 T recommendation.
T1CE uses the T1w MPRAGE protocol of the same field (post-contrast MPRAGE is the clinical norm).
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCES = ("mprage", "se", "ir", "gre", "space")


@dataclass(frozen=True)
class Protocol:
    contrast: str  # a key of tumsyn_bids.contrasts.CONTRASTS
    sequence: str  # one of SEQUENCES: how the physics simulator renders it
    field_strength: float
    tr_ms: float
    te_ms: float
    ti_ms: float | None
    flip_angle: float | str
    vendor: str = "Siemens"


_TABLE: tuple[Protocol, ...] = (
    Protocol("T1w", "mprage", 3.0, 2300.0, 2.3, 900.0, 9.0),
    Protocol("T2w", "space", 3.0, 3200.0, 563.0, None, "T2var"),
    Protocol("FLAIR", "ir", 3.0, 9000.0, 90.0, 2500.0, 150.0),
    Protocol("PDw", "se", 3.0, 3000.0, 12.0, None, 90.0),
    Protocol("T2starw", "gre", 3.0, 700.0, 20.0, None, 20.0),
    Protocol("SWI", "gre", 3.0, 28.0, 20.0, None, 15.0),
    Protocol("T1CE", "mprage", 3.0, 2300.0, 2.3, 900.0, 9.0),
    Protocol("T1w", "mprage", 1.5, 2400.0, 3.6, 1000.0, 8.0),
    Protocol("T2w", "se", 1.5, 5725.0, 100.0, None, 90.0, "Philips"),
    Protocol("FLAIR", "ir", 1.5, 9000.0, 110.0, 2200.0, 150.0),
    Protocol("PDw", "se", 1.5, 5725.0, 8.0, None, 90.0, "Philips"),
    Protocol("T2starw", "gre", 1.5, 600.0, 20.0, None, 20.0),
    Protocol("SWI", "gre", 1.5, 48.0, 40.0, None, 20.0),
    Protocol("T1CE", "mprage", 1.5, 2400.0, 3.6, 1000.0, 8.0),
)

FIELD_STRENGTHS: tuple[float, ...] = (1.5, 3.0)


def nearest_field_strength(field_strength: float | None) -> float:
    """The table's field strength closest to ``field_strength`` (3 T when unknown)."""
    if field_strength is None:
        return 3.0
    return min(FIELD_STRENGTHS, key=lambda b: abs(b - float(field_strength)))


def default_protocol(contrast: str, field_strength: float | None = None) -> Protocol:
    """The default protocol for ``contrast`` at the table field strength nearest the given one."""
    bucket = nearest_field_strength(field_strength)
    for protocol in _TABLE:
        if protocol.contrast == contrast and protocol.field_strength == bucket:
            return protocol
    raise KeyError(f"no default protocol for contrast {contrast!r}")


def all_protocols() -> tuple[Protocol, ...]:
    """Every row of the table."""
    return _TABLE
