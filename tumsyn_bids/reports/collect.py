"""Find what a participant-level run left in out_dir: synthetic images, sidecars, figures, crashes.

Reads out_dir alone (no raw data, no torch), so the group level can run anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tumsyn_bids.bids.derivatives import MAP_SUFFIXES, parse_entities, read_json, sidecar_path

PLAN_FILE = "tumsyn_plan.json"  # sub-X/log/tumsyn_plan.json: what the participant level planned


@dataclass
class OutputRecord:
    """One synthetic image found in out_dir."""

    path: Path  # relative to out_dir
    entities: dict[str, str]
    suffix: str
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return str(self.sidecar.get("TargetContrast") or self.suffix)

    @property
    def stem(self) -> str:
        return self.path.name.split(".")[0]


def mask_record(out_dir: str | Path, rec: OutputRecord) -> tuple[Path | None, dict[str, Any]]:
    """The brain mask an output used (from its ``Sources``, relative to out_dir) and the mask's sidecar."""
    for uri in rec.sidecar.get("Sources", []):
        if isinstance(uri, str) and uri.startswith("bids::") and "_mask.nii" in uri:
            rel = Path(uri[len("bids::"):])
            return rel, read_json(sidecar_path(Path(out_dir) / rel)) or {}
    return None, {}


def mask_warning(mask_sidecar: dict[str, Any]) -> str | None:
    """The ``MaskQC`` warning of a mask sidecar, if any (written by the skull-strip QC)."""
    mask_qc = mask_sidecar.get("MaskQC")
    return str(mask_qc["Warning"]) if isinstance(mask_qc, dict) and mask_qc.get("Warning") else None


def mask_volume_ml(mask_sidecar: dict[str, Any]) -> float | None:
    """Brain-mask volume in mL: ``MaskQC.VolumeML`` when present, else ``BrainVolumeMl``."""
    mask_qc = mask_sidecar.get("MaskQC")
    for value in ((mask_qc or {}).get("VolumeML") if isinstance(mask_qc, dict) else None,
                  mask_sidecar.get("BrainVolumeMl")):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def participants_in(out_dir: str | Path) -> list[str]:
    """Participant labels with a ``sub-*`` directory in out_dir, sorted."""
    return sorted(p.name[4:] for p in Path(out_dir).glob("sub-*") if p.is_dir())


def synthetic_outputs(out_dir: str | Path, subject: str | None = None) -> list[OutputRecord]:
    """Every ``*_desc-tumsyn*`` NIfTI (with its sidecar) under out_dir, or one participant's."""
    out_dir = Path(out_dir)
    pattern = f"sub-{subject}" if subject else "sub-*"
    records = []
    for path in sorted(out_dir.glob(f"{pattern}/**/anat/*_desc-tumsyn*.nii*")):
        if path.name.startswith("."):
            continue  # temporary file of an atomic write in progress
        try:
            entities, suffix, _ = parse_entities(path)
        except ValueError:
            continue
        if entities.get("space"):
            continue  # template-space copies are listed with their native image
        if suffix in MAP_SUFFIXES:
            continue  # predicted tissue maps (--save-maps) accompany a synthetic image; they are not one
        records.append(OutputRecord(path.relative_to(out_dir), entities, suffix,
                                    read_json(sidecar_path(path)) or {}))
    return records


def planned_outputs(out_dir: str | Path, subject: str) -> list[dict[str, Any]]:
    """What the participant level planned for ``subject`` (empty when unknown)."""
    data = read_json(Path(out_dir) / f"sub-{subject}" / "log" / PLAN_FILE)
    return list(data.get("outputs", [])) if data else []


def crash_files(out_dir: str | Path, subject: str) -> list[Path]:
    """Crash files of ``subject``'s latest run (``sub-X/log/<run_uuid>/crash-*``), relative to out_dir."""
    log = Path(out_dir) / f"sub-{subject}" / "log"
    runs = sorted((p for p in log.glob("*") if p.is_dir()), key=lambda p: p.name)
    if not runs:
        return []
    return sorted(p.relative_to(out_dir) for p in runs[-1].glob("crash-*"))


def crash_summary(path: str | Path) -> str:
    """The last line of a nipype crash file's traceback (the error message)."""
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "unreadable crash file"
    for line in reversed(lines):
        if "Error" in line.split(":")[0] or "Exception" in line.split(":")[0]:
            return line
    return lines[-1] if lines else "empty crash file"
