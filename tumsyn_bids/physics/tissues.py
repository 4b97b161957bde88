"""Tissue relaxation tables, FreeSurfer label -> tissue kind, and seeded per-subject draws.

Each tissue *kind* has ranges of T1, T2, T2* (ms) and relative proton density (CSF = 1) at 1.5 T
and 3 T. A simulated subject draws one value per tissue *class* uniformly inside its kind's range
(domain randomisation within physical ranges); other field strengths (e.g. 7 T) are obtained by a
per-kind power law through the 1.5 T and 3 T values (an extrapolation: approximate).

Sources (values rounded, ranges widened to cover the spread between mapping methods):
- WM, cortical GM, CSF, fat, muscle: Stanisz et al., MRM 2005 (3 T); Wansapura et al., JMRI 1999
  (3 T in vivo); cortical GM T1 at 3 T 1300-1650 ms (Wansapura 1331 ms, Stanisz 1820 ms in vitro
  at 37 C is above in vivo values; reviews of 3 T in vivo mapping, Bojorquez et al., MRI 2017,
  put most GM values near 1350-1600 ms); the 1.5 T table of Bottomley et al., Med Phys 1984 as summarised in the
  "Relaxation (NMR)" encyclopaedia entry; WM T1 spread 0.6-1.1 s at 3 T: Asslaender 2024
  (arXiv 2409.05318). PD: BrainWeb relative values (CSF 1, GM 0.86, WM 0.77), widened.
- Deep grey matter (T1 between WM and cortex, short T2/T2* from iron): Gelman et al., Radiology
  1999 and 2001 (1.5 T, 3 T iron and T2); Peters et al., MRI 2007 (T2* at 1.5/3/7 T).
- Blood: Lu et al., MRM 2004 (blood T1 1.5 T ~1440 ms, 3 T ~1650-1930 ms); venous T2/T2* short
  (oxygenation dependent), Zhao et al., MRM 2007.
- Cortical bone: ultrashort T2* (< 1 ms) and low visible PD (Du et al., JMR 2010), so bone is
  dark in every conventional sequence.
- Gadolinium: r1 ~ 3.5-4.5 /s/mM at 1.5-3 T (Rohrer et al., Invest Radiol 2005); concentrations
  are rough post-bolus values, used only for the contrast-enhanced T1w approximation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

Range = tuple[float, float]


@dataclass(frozen=True)
class TissueKind:
    """Physical ranges of one tissue type; ``*_15`` at 1.5 T, ``*_3`` at 3 T."""

    t1_15: Range
    t1_3: Range
    t2_15: Range
    t2_3: Range
    t2s_15: Range
    t2s_3: Range
    pd: Range
    gd_mm: Range = (0.0, 0.0)  # gadolinium concentration after a standard dose (T1CE approximation)
    susceptibility: Range = (0.0, 0.0)  # 0..1 venous/iron weight (SWI approximation)
    brain: bool = False  # inside the brain mask


KINDS: dict[str, TissueKind] = {
    "air": TissueKind((1e4, 1e4), (1e4, 1e4), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (0.0, 0.0)),
    "wm": TissueKind((600, 880), (750, 1100), (65, 90), (60, 85), (55, 75), (40, 55), (0.65, 0.77), brain=True),
    "gm": TissueKind((920, 1200), (1300, 1650), (85, 110), (85, 110), (65, 90), (50, 70), (0.78, 0.88), brain=True),
    "csf": TissueKind((3000, 4500), (3500, 4500), (1400, 2300), (1300, 2000), (300, 600), (150, 400), (0.95, 1.0), brain=True),
    "thalamus": TissueKind((750, 900), (1050, 1350), (70, 90), (70, 85), (50, 70), (40, 55), (0.72, 0.82), (0, 0), (0.0, 0.1), True),
    "caudate": TissueKind((900, 1100), (1250, 1500), (80, 100), (75, 95), (55, 75), (40, 55), (0.76, 0.86), (0, 0), (0.1, 0.2), True),
    "putamen": TissueKind((850, 1050), (1150, 1450), (70, 90), (65, 85), (45, 60), (30, 45), (0.74, 0.84), (0, 0), (0.2, 0.35), True),
    "pallidum": TissueKind((700, 850), (900, 1150), (60, 80), (55, 70), (30, 50), (20, 35), (0.70, 0.80), (0, 0), (0.35, 0.5), True),
    "brainstem": TissueKind((700, 950), (900, 1300), (70, 95), (65, 90), (50, 70), (35, 55), (0.68, 0.80), brain=True),
    "lesion": TissueKind((900, 1400), (1200, 1900), (110, 200), (100, 200), (70, 120), (50, 90), (0.80, 0.92), (0.0, 0.2), brain=True),
    "vessel": TissueKind((1300, 1550), (1600, 1950), (80, 200), (40, 150), (30, 80), (15, 40), (0.80, 0.90), (0.3, 1.0), (0.6, 1.0), True),
    "choroid_plexus": TissueKind((900, 1300), (1200, 1700), (80, 130), (70, 120), (40, 80), (30, 60), (0.80, 0.92), (0.2, 0.6), (0.1, 0.3), True),
    "dura": TissueKind((700, 1100), (900, 1400), (40, 70), (35, 65), (20, 50), (15, 40), (0.45, 0.70), (0.2, 0.5)),
    "bone": TissueKind((200, 350), (220, 400), (0.5, 2.0), (0.4, 1.5), (0.3, 1.0), (0.2, 0.8), (0.05, 0.20)),
    "fat": TissueKind((230, 290), (350, 420), (55, 90), (60, 135), (30, 60), (20, 45), (0.85, 1.0), (0.0, 0.05)),
    "muscle": TissueKind((820, 950), (1300, 1500), (40, 55), (30, 50), (25, 40), (18, 30), (0.65, 0.75), (0.05, 0.2)),
    "eye": TissueKind((3000, 4200), (3500, 4300), (900, 1500), (800, 1400), (200, 500), (100, 300), (0.95, 1.0)),
    # Skull diploe (added for the demo head): adult calvarial marrow is mostly fatty (bright on
    # T1w). Fatty marrow T1 ~290 ms at 1.5 T and ~370 ms at 3 T, T2 ~50-60 ms (Gold et al., AJR
    # 2004, femoral marrow); red marrow and the bone trabeculae lengthen T1 and lower the visible
    # PD (Vande Berg et al., Radiology 1998): ranges widened toward them. Trabecular bone shortens
    # T2* to ~5-25 ms (Wehrli et al., Radiology 1991; Majumdar et al., MRM 1991).
    "marrow": TissueKind((280, 450), (360, 560), (45, 80), (40, 75), (10, 25), (5, 15), (0.55, 0.80), (0.0, 0.05)),
    # Optic nerve and spinal cord (myelinated tracts outside the intracranial mask): white-matter
    # values (Stanisz et al., MRM 2005; cord T1 ~ 800-1100 ms at 3 T, Smith et al., MRM 2008),
    # T2 slightly longer (CSF partial volume in the sheath).
    "nerve": TissueKind((650, 900), (800, 1150), (70, 100), (65, 95), (50, 75), (35, 55), (0.66, 0.80)),
    # Extra-cerebral classes whose type is not published (SynthSeg maps): broad ranges.
    "extracerebral": TissueKind((200, 2500), (250, 3000), (20, 200), (20, 200), (5, 100), (4, 80), (0.1, 1.0), (0.0, 0.2)),
    # Fallback for labels the table does not know (logged by the phantom loader).
    "unknown": TissueKind((600, 2000), (800, 2500), (40, 150), (40, 150), (20, 80), (15, 70), (0.5, 0.9)),
}

GD_RELAXIVITY_PER_S_MM: Range = (3.5, 4.5)
SHARED_QUANTILE_WEIGHT = 0.6

# FreeSurfer labels -> (class name, kind). Left/right structures share a class.
FREESURFER_CLASSES: dict[int, tuple[str, str]] = {
    0: ("background", "air"),
    2: ("cerebral_wm", "wm"), 41: ("cerebral_wm", "wm"),
    3: ("cortex", "gm"), 42: ("cortex", "gm"),
    4: ("ventricles", "csf"), 43: ("ventricles", "csf"), 5: ("ventricles", "csf"), 44: ("ventricles", "csf"),
    14: ("ventricles", "csf"), 15: ("ventricles", "csf"), 72: ("ventricles", "csf"),
    24: ("csf", "csf"),
    7: ("cerebellum_wm", "wm"), 46: ("cerebellum_wm", "wm"),
    8: ("cerebellum_cortex", "gm"), 47: ("cerebellum_cortex", "gm"),
    10: ("thalamus", "thalamus"), 49: ("thalamus", "thalamus"),
    11: ("caudate", "caudate"), 50: ("caudate", "caudate"),
    12: ("putamen", "putamen"), 51: ("putamen", "putamen"),
    13: ("pallidum", "pallidum"), 52: ("pallidum", "pallidum"),
    16: ("brainstem", "brainstem"),
    17: ("hippocampus", "gm"), 53: ("hippocampus", "gm"),
    18: ("amygdala", "gm"), 54: ("amygdala", "gm"),
    25: ("lesion", "lesion"), 57: ("lesion", "lesion"), 77: ("lesion", "lesion"),
    26: ("accumbens", "caudate"), 58: ("accumbens", "caudate"),
    28: ("ventral_dc", "brainstem"), 60: ("ventral_dc", "brainstem"),
    29: ("undetermined", "gm"),
    30: ("vessel", "vessel"), 62: ("vessel", "vessel"),
    31: ("choroid_plexus", "choroid_plexus"), 63: ("choroid_plexus", "choroid_plexus"),
    85: ("optic_chiasm", "wm"),
}

# SynthSeg extra-cerebral labels (names unpublished): each is its own class of broad ranges.
EXTRACEREBRAL_LABELS: frozenset[int] = frozenset({136, 137, 163, 164, *range(502, 531)})


def class_for_label(label: int) -> tuple[str, str] | None:
    """(class name, kind) of a label value, or None when the table does not know it."""
    if label in FREESURFER_CLASSES:
        return FREESURFER_CLASSES[label]
    if label in EXTRACEREBRAL_LABELS:
        return (f"extracerebral_{label}", "extracerebral")
    return None


@dataclass(frozen=True)
class TissueClass:
    """One class of a phantom: a name (unique in the phantom) and its tissue kind."""

    name: str
    kind: str


@dataclass(frozen=True)
class TissueProperties:
    """Drawn parameters, one entry per phantom class (same order as ``Phantom.classes``)."""

    classes: tuple[TissueClass, ...]
    field_strength: float
    t1: np.ndarray  # ms
    t2: np.ndarray  # ms
    t2s: np.ndarray  # ms
    pd: np.ndarray  # relative, CSF = 1
    gd_mm: np.ndarray  # gadolinium concentration (mM) for contrast-enhanced T1w
    susceptibility: np.ndarray  # 0..1 weight for the SWI approximation
    gd_relaxivity: float  # r1 in /s/mM

    def as_table(self) -> list[dict[str, float | str]]:
        """One dict per class (for logs and sidecars)."""
        return [
            {"class": c.name, "kind": c.kind, "T1": float(self.t1[i]), "T2": float(self.t2[i]),
             "T2star": float(self.t2s[i]), "PD": float(self.pd[i])}
            for i, c in enumerate(self.classes)
        ]


def _range_at(r15: Range, r3: Range, field: float) -> Range:
    """Range at ``field`` tesla: exact at 1.5/3 T, power law through both otherwise."""
    if math.isclose(field, 3.0):
        return r3
    if math.isclose(field, 1.5):
        return r15
    out = []
    for a, b in zip(r15, r3, strict=False):
        if a <= 0 or b <= 0:
            out.append(b)
            continue
        k = math.log(b / a) / math.log(2.0)
        out.append(b * (field / 3.0) ** k)
    return (min(out), max(out))


def kind_ranges(kind: str, field_strength: float) -> dict[str, Range]:
    """T1/T2/T2*/PD ranges of ``kind`` at ``field_strength`` tesla."""
    k = KINDS[kind]
    return {
        "t1": _range_at(k.t1_15, k.t1_3, field_strength),
        "t2": _range_at(k.t2_15, k.t2_3, field_strength),
        "t2s": _range_at(k.t2s_15, k.t2s_3, field_strength),
        "pd": k.pd,
    }


def draw_tissue_properties(phantom_or_classes, field_strength: float, rng: np.random.Generator) -> TissueProperties:
    """Draw T1, T2, T2*, PD (and the T1CE/SWI extras) per class within its kind's ranges
    (quantile = 0.6 x a subject-wide uniform + 0.4 x a per-class uniform).

    ``phantom_or_classes`` is a :class:`~tumsyn_bids.physics.phantoms.Phantom` or a sequence of
    :class:`TissueClass`. The draw is a function of ``rng`` only (seeded -> reproducible).
    """
    classes = tuple(getattr(phantom_or_classes, "classes", phantom_or_classes))
    if not field_strength or field_strength <= 0:
        raise ValueError(f"field strength must be positive, got {field_strength}")
    n = len(classes)
    # Each parameter's quantile mixes one value shared by all classes of the subject with a
    # per-class value: tissue values move together (as they do between subjects, scanners and
    # mapping methods), so WM/GM/CSF keep their physical order while their spread is randomised.
    shared = rng.random((6, 1))
    u = SHARED_QUANTILE_WEIGHT * shared + (1.0 - SHARED_QUANTILE_WEIGHT) * rng.random((6, n))
    values = {name: np.empty(n) for name in ("t1", "t2", "t2s", "pd", "gd", "sus")}
    for i, c in enumerate(classes):
        ranges = kind_ranges(c.kind, field_strength)
        kind = KINDS[c.kind]
        for j, key in enumerate(("t1", "t2", "t2s", "pd")):
            lo, hi = ranges[key]
            values[key][i] = lo + (hi - lo) * u[j, i]
        values["gd"][i] = kind.gd_mm[0] + (kind.gd_mm[1] - kind.gd_mm[0]) * u[4, i]
        values["sus"][i] = kind.susceptibility[0] + (kind.susceptibility[1] - kind.susceptibility[0]) * u[5, i]
    # T2* never exceeds T2 physically.
    values["t2s"] = np.minimum(values["t2s"], values["t2"])
    lo, hi = GD_RELAXIVITY_PER_S_MM
    return TissueProperties(
        classes=classes,
        field_strength=float(field_strength),
        t1=values["t1"], t2=values["t2"], t2s=values["t2s"], pd=values["pd"],
        gd_mm=values["gd"], susceptibility=values["sus"],
        gd_relaxivity=float(lo + (hi - lo) * rng.random()),
    )


def nominal_tissue_properties(classes, field_strength: float) -> TissueProperties:
    """Mid-range values (no randomness): for figures and known-answer tests."""
    classes = tuple(getattr(classes, "classes", classes))
    mids = {key: np.array([sum(kind_ranges(c.kind, field_strength)[key]) / 2 for c in classes])
            for key in ("t1", "t2", "t2s", "pd")}
    gd = np.array([sum(KINDS[c.kind].gd_mm) / 2 for c in classes])
    sus = np.array([sum(KINDS[c.kind].susceptibility) / 2 for c in classes])
    return TissueProperties(classes, float(field_strength), mids["t1"], mids["t2"], np.minimum(mids["t2s"], mids["t2"]),
                            mids["pd"], gd, sus, sum(GD_RELAXIVITY_PER_S_MM) / 2)


# Between-subject spread of healthy adult relaxation times, as log-normal standard deviations
# (coefficient of variation): a subject-wide part shared by all tissues (scanner calibration,
# B1, mapping method, age) and a smaller per-class part (tissue ratios such as GM/WM T1 vary
# between healthy subjects by a few per cent only). Sizes from the spread of single-method
# studies: WM/GM T1 CV ~4-7 % and T2 CV ~3-6 % at 3 T (Wansapura et al., JMRI 1999; Stanisz et
# al., MRM 2005; Bojorquez et al., MRI 2017 review of 3 T values), PD CV ~2-4 % (Gras et al.,
# PLoS One 2013, quantitative water content), T2* CV ~5-10 % (Peters et al., MRI 2007).
# The shared part keeps the GM/WM T1 ratio near its population value (~1.5-1.6 at 3 T), so GM
# and WM never swap order on FLAIR or MPRAGE, as they do not in real scans.
POPULATION_LOG_SD: dict[str, tuple[float, float]] = {  # (subject-wide, per class)
    "t1": (0.05, 0.02),
    "t2": (0.05, 0.02),
    "t2s": (0.07, 0.04),
    "pd": (0.025, 0.015),
}
# Kinds whose table range is itself a guess (unpublished SynthSeg classes, fallback): uniform draw.
BROAD_KINDS = frozenset({"extracerebral", "unknown"})


def draw_population_properties(phantom_or_classes, field_strength: float, rng: np.random.Generator,
                               spread: float = 1.0) -> TissueProperties:
    """Tissue values around the population means (:func:`nominal_tissue_properties`) with a
    realistic, correlated between-subject spread (:data:`POPULATION_LOG_SD` times ``spread``).

    ``spread=0`` gives the population means exactly. Broad kinds (unpublished extra-cerebral
    classes) keep a uniform draw over their range. T2* never exceeds T2; PD stays <= 1.
    """
    classes = tuple(getattr(phantom_or_classes, "classes", phantom_or_classes))
    mean = nominal_tissue_properties(classes, field_strength)
    n = len(classes)
    values = {}
    for key in ("t1", "t2", "t2s", "pd"):
        shared_sd, own_sd = POPULATION_LOG_SD[key]
        z = shared_sd * rng.standard_normal() + own_sd * rng.standard_normal(n)
        values[key] = getattr(mean, key) * np.exp(spread * z)
    broad = np.array([c.kind in BROAD_KINDS for c in classes])
    if broad.any():
        uniform = draw_tissue_properties([c for c in classes if c.kind in BROAD_KINDS], field_strength, rng)
        for key in ("t1", "t2", "t2s", "pd"):
            values[key][broad] = getattr(uniform, key)
    values["pd"] = np.minimum(values["pd"], 1.0)
    values["t2s"] = np.minimum(values["t2s"], values["t2"])
    return dataclasses.replace(mean, t1=values["t1"], t2=values["t2"], t2s=values["t2s"], pd=values["pd"])
