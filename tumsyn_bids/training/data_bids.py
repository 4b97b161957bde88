"""Real paired training data from a BIDS dataset: every session with two or more contrasts.

Images of a session are put on the grid of its first image (T1w preferred): copied when the grids
match, rigidly registered with antspyx otherwise. Intensities are percentile-normalised per image
like the inference engine does; the brain mask is the union of non-zero voxels (the shipped
recipe expects skull-stripped inputs). Each image's prompt is built from its own sidecar and
participants.tsv/sessions.tsv with the app's prompt code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumsyn_bids.contrasts import CONTRASTS, SOURCE_SUFFIXES
from tumsyn_bids.errors import NoInputError, UsageError
from tumsyn_bids.prompts import Prompt
from tumsyn_bids.training.pool import PoolImage, PoolSubject, crop_to_mask

_SUFFIX_TO_CONTRAST = {s: c.name for c in CONTRASTS.values() for s in c.source_suffixes}


@dataclass(frozen=True)
class SessionImages:
    """The anatomical images of one session, one per contrast."""

    subject: str
    session: str | None
    files: dict[str, Path]  # contrast -> image path


def contrast_of(suffix: str, entities: dict) -> str | None:
    """The contrast a raw anat file is (a ``ce-`` T1w is T1CE), or None when unknown."""
    if suffix == "T1w" and entities.get("ceagent"):
        return "T1CE"
    return _SUFFIX_TO_CONTRAST.get(suffix)


def find_sessions(bids_dir: Path, participant_label: list[str] | None = None) -> list[SessionImages]:
    """Sessions with at least two different contrasts (first run of each), via pybids."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    bids_dir = Path(bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise UsageError("not a BIDS dataset (no dataset_description.json)", path=bids_dir)
    layout = BIDSLayout(str(bids_dir), validate=False, indexer=BIDSLayoutIndexer(index_metadata=False))
    suffixes = sorted({s for c in CONTRASTS.values() for s in c.source_suffixes})
    query = {"datatype": "anat", "suffix": suffixes, "extension": [".nii", ".nii.gz"]}
    if participant_label:
        query["subject"] = [p.removeprefix("sub-") for p in participant_label]
    groups: dict[tuple[str, str | None], dict[str, Path]] = {}
    for f in sorted(layout.get(**query), key=lambda f: f.path):
        ent = f.get_entities()
        contrast = contrast_of(ent["suffix"], ent)
        if contrast is None:
            continue
        key = (ent["subject"], ent.get("session"))
        groups.setdefault(key, {}).setdefault(contrast, Path(f.path))
    return [SessionImages(sub, ses, files) for (sub, ses), files in sorted(groups.items(), key=str)
            if len(files) >= 2]


def _read_sidecar(image: Path) -> dict:
    import json

    name = image.name.removesuffix(".gz").removesuffix(".nii")
    sidecar = image.with_name(name + ".json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def _ms(value) -> float | None:
    try:
        return None if value is None else float(value) * 1000.0
    except (TypeError, ValueError):
        return None


def prompt_for(image: Path, contrast: str, voxel_size: tuple[float, ...], age: float | None,
               sex: str | None) -> str:
    """The prompt describing ``image`` from its sidecar (BIDS seconds -> ms) and demographics."""
    meta = _read_sidecar(image)
    field = meta.get("MagneticFieldStrength")
    flip = meta.get("FlipAngle")
    return Prompt(
        modality=CONTRASTS[contrast].prompt_modality,
        voxel_size=tuple(round(float(v), 2) for v in voxel_size),  # type: ignore[arg-type]
        age=None if age is None else int(round(age)), sex=sex,
        field_strength=None if field is None else float(field),
        vendor=_vendor(meta.get("Manufacturer")),
        tr_ms=_ms(meta.get("RepetitionTime")), te_ms=_ms(meta.get("EchoTime")),
        ti_ms=_ms(meta.get("InversionTime")),
        flip_angle=None if flip is None else (flip if isinstance(flip, str) else float(flip)),
    ).text()


def _vendor(name: str | None) -> str | None:
    if not name:
        return None
    lower = name.lower()
    for vendor in ("Siemens", "Philips", "GE", "Canon", "Toshiba", "Hitachi"):
        if vendor.lower() in lower:
            return vendor
    return name.split()[0]


def _on_grid(ref_path: Path, path: Path) -> np.ndarray:
    """``path``'s data on the grid of ``ref_path`` (as is when grids match, else rigid antspyx)."""
    import nibabel as nib

    ref, img = nib.load(str(ref_path)), nib.load(str(path))
    data = np.asarray(img.dataobj, np.float32)
    if data.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=1e-3):
        return data
    from tumsyn_bids.evaluation import register_rigid

    return register_rigid(ref_path, path)


def load_session(session: SessionImages, bids_dir: Path, crop_margin: int = 4) -> PoolSubject:
    """Load, co-register and normalise one session's images into a :class:`PoolSubject`."""
    import nibabel as nib

    from tumsyn_bids.bids.participants import demographics_for, read_participants, read_sessions
    from tumsyn_bids.inference.normalize import normalize_intensity

    demo = demographics_for(read_participants(Path(bids_dir)), read_sessions(Path(bids_dir), session.subject),
                            session.subject, session.session)
    order = sorted(session.files, key=lambda c: SOURCE_SUFFIXES.index(c) if c in SOURCE_SUFFIXES else 99)
    ref_path = session.files[order[0]]
    voxel = tuple(float(v) for v in nib.load(str(ref_path)).header.get_zooms()[:3])
    arrays, prompts = [], []
    for contrast in order:
        data = np.nan_to_num(_on_grid(ref_path, session.files[contrast]))
        arrays.append(np.clip(normalize_intensity(data), 0.0, 1.0))  # float rounding can give 1 + 1 ulp
        prompts.append(prompt_for(session.files[contrast], contrast, voxel, demo.age, demo.sex))
    mask = np.any(np.stack(arrays) > 0, axis=0)
    arrays, mask = crop_to_mask(arrays, mask, crop_margin)
    images = [PoolImage(c, a, p) for c, a, p in zip(order, arrays, prompts)]
    name = f"sub-{session.subject}" + (f"_ses-{session.session}" if session.session else "")
    return PoolSubject(name, images, mask, {"files": {c: str(p) for c, p in session.files.items()}})


def load_bids_subjects(bids_dir: Path, participant_label: list[str] | None = None,
                       crop_margin: int = 4) -> list[PoolSubject]:
    """Every usable session as a pool subject; :class:`NoInputError` (exit 66) when none pairs up."""
    sessions = find_sessions(Path(bids_dir), participant_label)
    if not sessions:
        raise NoInputError("no session has two or more anatomical contrasts to pair for training",
                           path=bids_dir)
    return [load_session(s, Path(bids_dir), crop_margin) for s in sessions]
