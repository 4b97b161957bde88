"""Group level: ``group_desc-tumsyn_<target>.tsv`` + ``group_desc-tumsyn.html`` from out_dir alone."""

from __future__ import annotations

import csv
import html
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumsyn_bids.bids.derivatives import atomic_write_text
from tumsyn_bids.errors import NoInputError
from tumsyn_bids.reports.collect import (
    OutputRecord,
    crash_files,
    crash_summary,
    participants_in,
    planned_outputs,
    synthetic_outputs,
)

LOGGER = logging.getLogger("tumsyn.group")

COLUMNS: tuple[str, ...] = (
    "participant_id", "session_id", "run", "target", "file", "source", "prompt", "model",
    "weights_sha256", "device", "voxel_size", "skull_strip", "seconds",
    "qc_psnr", "qc_ssim", "qc_mae",
)


@dataclass
class GroupSummary:
    tables: dict[str, Path]  # target -> TSV path
    html: Path
    missing: dict[str, list[str]]  # participant -> missing planned outputs (or reasons)
    n_outputs: int


def _row(rec: OutputRecord) -> dict[str, Any]:
    sc = rec.sidecar
    sources = [s for s in sc.get("Sources", []) if s.startswith("bids:raw:")]
    qc = (sc.get("QC") or {}).get("masked") or (sc.get("QC") or {}).get("whole") or {}
    voxel = sc.get("VoxelSize")
    return {
        "participant_id": f"sub-{rec.entities['sub']}",
        "session_id": f"ses-{rec.entities['ses']}" if rec.entities.get("ses") else "n/a",
        "run": rec.entities.get("run", "n/a"),
        "target": rec.target,
        "file": rec.path.as_posix(),
        "source": sources[0][len("bids:raw:"):] if sources else "n/a",
        "prompt": sc.get("Prompt", "n/a"),
        "model": sc.get("ModelName", "n/a"),
        "weights_sha256": sc.get("ModelWeightsSHA256", "n/a"),
        "device": sc.get("Device", "n/a"),
        "voxel_size": "x".join(f"{v:g}" for v in voxel) if isinstance(voxel, list) else "n/a",
        "skull_strip": sc.get("SkullStripMethod", "n/a"),
        "seconds": sc.get("SynthesisSeconds", "n/a"),
        "qc_psnr": _num(qc.get("psnr")),
        "qc_ssim": _num(qc.get("ssim")),
        "qc_mae": _num(qc.get("mae")),
    }


def _num(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.4f}"


def _tsv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def find_missing(out_dir: str | Path, records: list[OutputRecord]) -> dict[str, list[str]]:
    """Per participant: planned outputs that are absent, plus crash messages, or targets others have."""
    present = {rec.path.as_posix() for rec in records}
    targets_by_sub: dict[str, set[str]] = {}
    for rec in records:
        targets_by_sub.setdefault(rec.entities["sub"], set()).add(rec.target)
    all_targets = set().union(*targets_by_sub.values()) if targets_by_sub else set()
    missing: dict[str, list[str]] = {}
    for sub in participants_in(out_dir):
        items: list[str] = []
        planned = planned_outputs(out_dir, sub)
        if planned:
            items += [f"{p['output']} (not written" + (f": {p['failed']})" if p.get("failed") else ")")
                      for p in planned if p.get("output") not in present]
        else:
            items += [f"no {t} output" for t in sorted(all_targets - targets_by_sub.get(sub, set()))]
        crashes = crash_files(out_dir, sub)
        items += [f"{c.as_posix()}: {crash_summary(Path(out_dir) / c)}" for c in crashes] if items else []
        if items:
            missing[f"sub-{sub}"] = items
    return missing


def render_html(rows: list[dict[str, Any]], missing: dict[str, list[str]]) -> str:
    """The group HTML page."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS if c not in {"prompt", "weights_sha256"})
    body = []
    for row in rows:
        cells = []
        for col in COLUMNS:
            if col in {"prompt", "weights_sha256"}:
                continue
            value = esc(str(row[col]))
            if col == "file":
                value = f'<a href="{esc(row["participant_id"])}.html">{value}</a>'
            cells.append(f"<td>{value}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    miss = "".join(
        f"<li><b>{esc(sub)}</b><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul></li>"
        for sub, items in sorted(missing.items())
    ) or "<li>none</li>"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tumsyn group report</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;font-size:.85em}th{background:#eef}"
        ".fail{color:#b00}</style></head><body>\n"
        f"<h1>tumsyn group report</h1><p>{len(rows)} synthetic images from "
        f"{len({r['participant_id'] for r in rows})} participants.</p>\n"
        f"<h2>Outputs</h2><table><tr>{head}</tr>{''.join(body)}</table>\n"
        f"<h2 class=\"fail\">Participants missing outputs</h2><ul>{miss}</ul>\n</body></html>\n"
    )


def write_group_reports(out_dir: str | Path) -> GroupSummary:
    """Aggregate every synthetic image's sidecar in out_dir into TSVs (one per target) and an HTML page."""
    out_dir = Path(out_dir)
    records = synthetic_outputs(out_dir)
    if not records and not participants_in(out_dir):
        raise NoInputError("no participant-level outputs found (run the participant level first)", path=out_dir)
    rows = [_row(rec) for rec in records]
    tables: dict[str, Path] = {}
    for target in sorted({r["target"] for r in rows}):
        path = out_dir / f"group_desc-tumsyn_{target}.tsv"
        atomic_write_text(path, _tsv([r for r in rows if r["target"] == target]))
        tables[target] = path
    missing = find_missing(out_dir, records)
    for sub, items in missing.items():
        LOGGER.warning("%s is missing outputs: %s", sub, "; ".join(items))
    page = atomic_write_text(out_dir / "group_desc-tumsyn.html", render_html(rows, missing))
    return GroupSummary(tables, page, missing, len(rows))
