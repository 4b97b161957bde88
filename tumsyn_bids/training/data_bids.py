"""Real paired training data from a BIDS dataset: every session with two or more contrasts.

Images of a session are put on the grid of its first image (T1w preferred): copied when the grids
match, rigidly registered with antspyx otherwise. Intensities are percentile-normalised per image
like the inference engine does; the brain mask is the union of non-zero voxels (the shipped
recipe expects skull-stripped inputs). Each image's prompt is built from its own sidecar and
participants.tsv/sessions.tsv with the app's own prompt code (:mod:`tumsyn_bids.prompts`), so a
fine-tuned model sees the prompts the app gives it at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tumsyn_bids.contrasts import SOURCE_SUFFIXES, contrast_of
from tumsyn_bids.errors import NoInputError, UsageError
from tumsyn_bids.training.pool import PoolImage, PoolSubject, crop_to_mask


@dataclass(frozen=True)
class SessionImages:
    """The anatomical images of one session, one per contrast, with their sidecars and demographics."""

    subject: str
    session: str | None
    files: dict[str, Path]  # contrast -> image path
    metadata: dict[str, dict] = field(default_factory=dict)  # contrast -> merged sidecar (inheritance)
    demographics: dict = field(default_factory=dict)  # Demographics.as_dict() of the session


def find_sessions(bids_dir: Path, participant_label: list[str] | None = None) -> list[SessionImages]:
    """Sessions with at least two different contrasts (first run of each), discovered as the app does.

    Uses :func:`tumsyn_bids.bids.layout.discover` (pybids, anat only, sidecars merged by the
    inheritance principle, demographics from participants.tsv/sessions.tsv).
    """
    from tumsyn_bids.bids.layout import build_layout, discover, list_subjects

    bids_dir = Path(bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise UsageError("not a BIDS dataset (no dataset_description.json)", path=bids_dir)
    wanted = {p.removeprefix("sub-") for p in participant_label or ()}
    subjects = tuple(s for s in list_subjects(bids_dir) if not wanted or s in wanted)
    if not subjects:
        return []
    records = discover(bids_dir, build_layout(bids_dir, subjects=subjects), subjects=subjects)
    sessions = []
    for record in sorted(records, key=lambda r: str((r.subject, r.session))):
        files: dict[str, Path] = {}
        metadata: dict[str, dict] = {}
        for image in record.images:  # sorted by path: the first run of each contrast
            contrast = contrast_of(image.suffix, image.entities)
            if contrast is not None and contrast not in files:
                files[contrast], metadata[contrast] = Path(image.path), dict(image.metadata)
        if len(files) >= 2:
            sessions.append(SessionImages(record.subject, record.session, files, metadata,
                                          record.demographics.as_dict()))
    return sessions


def _on_grid(ref_path: Path, path: Path) -> np.ndarray:
    """``path``'s data on the grid of ``ref_path`` (as is when grids match, else rigid antspyx)."""
    import nibabel as nib

    ref, img = nib.load(str(ref_path)), nib.load(str(path))
    data = np.asarray(img.dataobj, np.float32)
    if data.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=1e-3):
        return data
    from tumsyn_bids.anat.registration import rigid_resample

    return rigid_resample(ref_path, path)[0].astype(np.float32)


def session_prompt(session: SessionImages, contrast: str, voxel_size: tuple[float, float, float]) -> str:
    """The prompt of ``session``'s ``contrast`` image: :func:`tumsyn_bids.prompts.source_prompt`, as at inference."""
    from tumsyn_bids.prompts import source_prompt

    return source_prompt(contrast, session.metadata.get(contrast, {}), voxel_size, session.demographics).text()


def load_session(session: SessionImages, crop_margin: int = 4) -> PoolSubject:
    """Load, co-register and normalise one session's images into a :class:`PoolSubject`."""
    from tumsyn_bids.bids.validation import check_nifti
    from tumsyn_bids.inference.normalize import normalize_intensity

    order = sorted(session.files, key=lambda c: SOURCE_SUFFIXES.index(c) if c in SOURCE_SUFFIXES else 99)
    ref_path = session.files[order[0]]
    voxel = check_nifti(ref_path)[1]  # every image is put on this grid; the planner's voxel sizes
    arrays, prompts = [], []
    for contrast in order:
        data = np.nan_to_num(_on_grid(ref_path, session.files[contrast]))
        arrays.append(np.clip(normalize_intensity(data), 0.0, 1.0))  # float rounding can give 1 + 1 ulp
        prompts.append(session_prompt(session, contrast, voxel))
    mask = np.any(np.stack(arrays) > 0, axis=0)
    arrays, mask = crop_to_mask(arrays, mask, crop_margin)
    images = [PoolImage(c, a, p) for c, a, p in zip(order, arrays, prompts, strict=True)]
    name = f"sub-{session.subject}" + (f"_ses-{session.session}" if session.session else "")
    return PoolSubject(name, images, mask, {"files": {c: str(p) for c, p in session.files.items()}})


def load_bids_subjects(bids_dir: Path, participant_label: list[str] | None = None,
                       crop_margin: int = 4) -> list[PoolSubject]:
    """Every usable session as a pool subject; :class:`NoInputError` (exit 66) when none pairs up."""
    sessions = find_sessions(Path(bids_dir), participant_label)
    if not sessions:
        raise NoInputError("no session has two or more anatomical contrasts to pair for training",
                           path=bids_dir)
    return [load_session(s, crop_margin) for s in sessions]
