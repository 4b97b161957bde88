"""Dataset discovery with pybids: anat images per participant/session, their merged metadata.

Indexing is kept small: ``validate=False``, only ``anat`` folders of the
selected participants/sessions are indexed (everything else is in the indexer's ``ignore`` list),
and the SQLite index lives in the run's work directory or ``--bids-database-dir``.
``--bids-filter-file`` entity filters are applied to every image query. Sidecar metadata follows
the inheritance principle (pybids merges top-level and per-file JSON).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tumsyn_bids.bids.participants import Demographics, demographics_for, read_participants, read_sessions
from tumsyn_bids.contrasts import ANAT_SUFFIXES, FILTER_QUERIES
from tumsyn_bids.errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from bids.layout import BIDSLayout

NIFTI_EXTENSIONS = (".nii", ".nii.gz")
_ALWAYS_IGNORED = ("code", "stimuli", "sourcedata", "models", "derivatives", "phenotype")


@dataclass(frozen=True)
class ImageRecord:
    """One raw anat image: path, pybids entities (subject, session, suffix, acquisition, run...), metadata."""

    path: Path
    suffix: str
    entities: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SessionRecord:
    """What one participant/session offers: its anat images and demographics."""

    subject: str
    session: str | None
    images: tuple[ImageRecord, ...]
    demographics: Demographics

    @property
    def key(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def list_subjects(bids_dir: Path) -> list[str]:
    """Participant labels present as ``sub-*`` folders (no pybids needed)."""
    return sorted(p.name[4:] for p in Path(bids_dir).glob("sub-*") if p.is_dir())


def check_participants(bids_dir: Path, labels: tuple[str, ...]) -> tuple[str, ...]:
    """Return the labels to process; raise when any requested label has no ``sub-`` folder."""
    present = list_subjects(bids_dir)
    if not labels:
        return tuple(present)
    unknown = [label for label in labels if label not in present]
    if unknown:
        listed = " ".join(f"sub-{u}" for u in unknown)
        raise UsageError(
            f"--participant-label: not in the dataset: {listed} (present: {len(present)} participant(s))",
            path=bids_dir,
        )
    return labels


def ignore_patterns(subjects: tuple[str, ...] = (), sessions: tuple[str, ...] = ()) -> list:
    """pybids ``ignore`` entries: non-BIDS folders, non-anat datatypes, unselected subjects/sessions."""
    patterns: list = [re.compile(rf"^/{name}(/|$)") for name in _ALWAYS_IGNORED]
    patterns.append(re.compile(r"^/\."))
    patterns.append(re.compile(r"^/sub-[^/]+/(ses-[^/]+/)?(?!anat(/|$)|ses-)[^/]+/"))
    if subjects:
        alternatives = "|".join(re.escape(s) for s in subjects)
        patterns.append(re.compile(rf"^/sub-(?!({alternatives})(/|$))[^/]+"))
    if sessions:
        alternatives = "|".join(re.escape(s) for s in sessions)
        patterns.append(re.compile(rf"^/sub-[^/]+/ses-(?!({alternatives})(/|$))[^/]+"))
    return patterns


def build_layout(
    bids_dir: Path,
    *,
    subjects: tuple[str, ...] = (),
    sessions: tuple[str, ...] = (),
    database_path: Path | None = None,
) -> "BIDSLayout":
    """A pybids layout over the selected anat data (database cached at ``database_path``)."""
    from bids.layout import BIDSLayout, BIDSLayoutIndexer

    indexer = BIDSLayoutIndexer(validate=False, index_metadata=True, ignore=ignore_patterns(subjects, sessions))
    kwargs: dict = {"validate": False, "indexer": indexer}
    if database_path is not None:
        Path(database_path).mkdir(parents=True, exist_ok=True)
        kwargs["database_path"] = str(database_path)
    try:
        return BIDSLayout(str(bids_dir), **kwargs)
    except OSError as exc:  # pybids reports a sidecar that is not JSON as OSError naming the file
        match = re.search(r"filename='([^']+)'", str(exc))
        where = match.group(1) if match else bids_dir
        if match and _starts_with_bom(Path(where)):
            raise DataError("sidecar starts with a UTF-8 byte-order mark (BOM), which JSON forbids and pybids "
                            "cannot read; save it without the BOM", path=where) from exc
        raise DataError("sidecar is not valid JSON; fix it or remove it", path=where) from exc
    except ValueError as exc:
        raise DataError(f"pybids cannot index the dataset ({str(exc).splitlines()[0]})", path=bids_dir) from exc


def _starts_with_bom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(3) == b"\xef\xbb\xbf"
    except OSError:
        return False


def _query_filters(bids_filters: dict, suffix: str) -> dict:
    merged = dict(bids_filters.get("anat", {}))
    for query, suffixes in FILTER_QUERIES.items():
        if suffix in suffixes:
            merged.update(bids_filters.get(query, {}))
    return merged


def _pybids_filters(filters: dict) -> dict:
    from bids.layout import Query

    out = {}
    for key, value in filters.items():
        if value is None:
            out[key] = Query.NONE
        elif value == "*":
            out[key] = Query.ANY
        else:
            out[key] = value
    return out


def find_images(layout: "BIDSLayout", subject: str, session: str | None, bids_filters: dict) -> list[ImageRecord]:
    """Every raw anat NIfTI of one subject/session that passes the filter file, sorted by path."""
    from bids.layout import Query

    records: list[ImageRecord] = []
    for suffix in ANAT_SUFFIXES:
        query = dict(
            subject=subject,
            session=session if session is not None else Query.NONE,
            datatype="anat",
            suffix=suffix,
            extension=list(NIFTI_EXTENSIONS),
        )
        query.update(_pybids_filters(_query_filters(bids_filters, suffix)))
        try:
            files = layout.get(invalid_filters="error", **query)
        except ValueError as exc:
            raise UsageError(f"--bids-filter-file: {str(exc).splitlines()[0]}") from exc
        for bids_file in files:
            if bids_file.entities.get("suffix") != suffix:  # pybids matches suffix case-insensitively
                continue
            try:
                metadata = bids_file.get_metadata()
            except (OSError, ValueError) as exc:
                raise DataError("sidecar metadata cannot be read", path=bids_file.path) from exc
            entities = dict(bids_file.get_entities(metadata=False))
            records.append(ImageRecord(Path(bids_file.path), suffix, entities, dict(metadata)))
    return sorted(records, key=lambda r: str(r.path))


def discover(
    bids_dir: Path,
    layout: "BIDSLayout",
    *,
    subjects: tuple[str, ...],
    sessions: tuple[str, ...] = (),
    bids_filters: dict | None = None,
) -> list[SessionRecord]:
    """One :class:`SessionRecord` per selected participant/session, in label order."""
    bids_filters = bids_filters or {}
    participants = read_participants(bids_dir)
    records: list[SessionRecord] = []
    for subject in subjects:
        present = sorted(layout.get_sessions(subject=subject, datatype="anat"))
        chosen: list[str | None] = [s for s in present if not sessions or s in sessions]
        if not present:
            chosen = [None]
        session_demo = read_sessions(bids_dir, subject)
        for session in chosen:
            images = find_images(layout, subject, session, bids_filters)
            demo = demographics_for(participants, session_demo, subject, session)
            records.append(SessionRecord(subject, session, tuple(images), demo))
    return records
