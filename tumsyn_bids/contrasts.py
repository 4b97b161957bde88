"""The contrasts tumsyn can synthesize: CLI name, prompt spelling, BIDS output naming.

The TUMSyn paper trains on seven modalities (T1w, T2w, FLAIR, SWI, T2*w, PD, T1CE). The exact
spelling used in the published training prompts is only known for ``T1w`` and ``T2w``; for the
others we use the paper's names. ``PDw`` is the current BIDS suffix (``PD`` is deprecated),
``T2starw`` the BIDS name for T2*-weighted images. SWI has no raw BIDS anat suffix and
contrast-enhanced T1w is a ``T1w`` with a ``ce-`` entity, so both get distinct derivative names.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Contrast:
    name: str  # what the user types after --target
    prompt_modality: str  # the word after "Modality:" in the prompt
    bids_suffix: str  # suffix of the derivative file
    desc: str = "tumsyn"  # desc- entity of the derivative file
    entities: dict[str, str] = field(default_factory=dict)  # extra entities of the output name
    source_suffixes: tuple[str, ...] = ()  # raw suffixes that count as "the session already has it"


CONTRASTS: dict[str, Contrast] = {
    c.name: c
    for c in (
        Contrast("T1w", "T1w", "T1w", source_suffixes=("T1w",)),
        Contrast("T2w", "T2w", "T2w", source_suffixes=("T2w",)),
        Contrast("FLAIR", "FLAIR", "FLAIR", source_suffixes=("FLAIR",)),
        Contrast("PDw", "PD", "PDw", source_suffixes=("PDw", "PD")),
        Contrast("T2starw", "T2*w", "T2starw", source_suffixes=("T2starw", "T2star")),
        Contrast("SWI", "SWI", "T2starw", desc="tumsynSWI", source_suffixes=("swi", "SWI")),
        Contrast("T1CE", "T1CE", "T1w", entities={"ce": "gadolinium"}, source_suffixes=()),
    )
}

# Raw anat suffixes that can serve as a synthesis source, in order of preference after T1w.
SOURCE_SUFFIXES: tuple[str, ...] = ("T1w", "T2w", "FLAIR", "PDw", "PD", "T2starw")

# The one suffix -> contrast table (raw BIDS anat suffix -> contrast name); planning, the BIDS
# discovery, the training data path and the CLI's filter-file queries all derive from it.
SUFFIX_TO_CONTRAST: dict[str, str] = {s: c.name for c in CONTRASTS.values() for s in c.source_suffixes}

# Raw anat suffixes that are indexed: possible sources and "already has the target" checks.
ANAT_SUFFIXES: tuple[str, ...] = tuple(SUFFIX_TO_CONTRAST)

# ``--bids-filter-file`` query names (lower-case, as fMRIPrep) -> the raw suffixes they select;
# ``anat`` applies to every query.
FILTER_QUERIES: dict[str, tuple[str, ...]] = {
    **{c.name.lower(): c.source_suffixes for c in CONTRASTS.values() if c.source_suffixes},
    "anat": (),
}

# The inverse of prompt_modality, for parsing prompts back.
MODALITY_TO_CONTRAST: dict[str, str] = {c.prompt_modality: c.name for c in CONTRASTS.values()}


def get_contrast(name: str) -> Contrast:
    """Look up a contrast by its CLI name, case-insensitively (``flair`` -> ``FLAIR``)."""
    for key, contrast in CONTRASTS.items():
        if key.lower() == name.lower():
            return contrast
    known = ", ".join(CONTRASTS)
    raise KeyError(f"unknown contrast {name!r}; choose from {known}")


def contrast_of(suffix: str, entities: dict | None = None) -> str | None:
    """The contrast a raw anat file shows (a ``ce-`` T1w counts as T1CE); None when unknown."""
    contrast = SUFFIX_TO_CONTRAST.get(suffix)
    if contrast == "T1w" and (entities or {}).get("ceagent"):
        return "T1CE"
    return contrast
