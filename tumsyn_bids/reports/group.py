"""Group level: ``group_desc-tumsyn_<target>.tsv`` + ``group_desc-tumsyn.html`` from out_dir alone."""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumsyn_bids import __version__
from tumsyn_bids.bids.derivatives import atomic_write_text
from tumsyn_bids.errors import NoInputError
from tumsyn_bids.reports.collect import (
    OutputRecord,
    crash_files,
    crash_summary,
    mask_record,
    mask_volume_ml,
    mask_warning,
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


def _mask_columns(out_dir: Path, rec: OutputRecord) -> dict[str, str]:
    """Mask volume and ``MaskQC`` warning (HTML table only; the TSV keeps its columns)."""
    _, sidecar = mask_record(out_dir, rec)
    volume = mask_volume_ml(sidecar)
    return {"mask_volume_ml": "n/a" if volume is None else f"{volume:.1f}",
            "mask_warning": mask_warning(sidecar) or "n/a"}


def _num(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.4f}"


def _tsv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore")
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


HTML_COLUMNS: tuple[tuple[str, str], ...] = (
    ("participant_id", "participant"), ("session_id", "session"), ("run", "run"), ("target", "target"),
    ("file", "output"), ("source", "source"), ("model", "model"), ("device", "device"), ("voxel_size", "voxel (mm)"),
    ("skull_strip", "skull strip"), ("mask_volume_ml", "mask (mL)"), ("mask_warning", "mask warning"),
    ("seconds", "seconds"), ("qc_psnr", "PSNR"), ("qc_ssim", "SSIM"), ("qc_mae", "MAE"),
)
PLOTTED: tuple[tuple[str, str], ...] = (
    ("qc_psnr", "PSNR (dB), acquired vs synthetic"), ("qc_ssim", "SSIM, acquired vs synthetic"),
    ("qc_mae", "MAE, acquired vs synthetic"), ("mask_volume_ml", "brain-mask volume (mL)"),
    ("seconds", "synthesis time (s)"),
)

# A dot is an outlier only when it lies more than OUTLIER_MADS scaled median absolute deviations
# from the median of its strip AND further from the median than a difference a user would call
# real: (kind, size), "relative" as a fraction of the median, "absolute" in the measure's units.
# Times and volumes: 10 %. PSNR: 1 dB. SSIM: 0.05. MAE (images normalised to [0, 1] by
# percentiles): 0.02. With fewer than MIN_OUTLIER_VALUES values no dot is an outlier.
OUTLIER_MADS = 3.0
MIN_OUTLIER_VALUES = 5
OUTLIER_FLOORS: dict[str, tuple[str, float]] = {
    "seconds": ("relative", 0.10),
    "mask_volume_ml": ("relative", 0.10),
    "qc_psnr": ("absolute", 1.0),
    "qc_ssim": ("absolute", 0.05),
    "qc_mae": ("absolute", 0.02),
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1500px;
padding:1em 1.2em 2em;color:#212529}
h1{font-size:1.7em;border-bottom:1px solid #dee2e6} h2{font-size:1.25em;margin-top:1.5em}
table{border-collapse:collapse} td,th{border:1px solid #dee2e6;padding:.22em .5em;font-size:.85em;
text-align:left} th{background:#f1f3f5;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums} tr:hover td{background:#f8f9fa}
.table-wrap{overflow-x:auto} td.warning{max-width:24em;font-size:.78em}
.fail{color:#b02a37;font-weight:600} .note{color:#6c757d;font-size:.88em}
svg.qc-plot{max-width:1000px;width:100%;height:auto;font-size:12px}
svg.qc-plot circle{fill:#1c7ed6;fill-opacity:.75} svg.qc-plot circle.outlier{fill:#e03131}
"""

# Click a column header to sort by it (numbers as numbers, n/a last); click again to reverse.
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var text = row.cells[col].textContent.trim();
        var num = parseFloat(text);
        return text === 'n/a' || text === '' ? null : (isNaN(num) || !/^[-+.\\d]/.test(text) ? text : num);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null) { return y === null ? 0 : 1; }
        if (y === null) { return -1; }
        var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def outliers(key: str, values: list[float]) -> list[bool]:
    """Which of ``values`` (one strip of measure ``key``) are outliers: beyond 3 MADs and the floor.

    The floor is :data:`OUTLIER_FLOORS` of ``key`` (10 % of the median for unknown measures).
    Fewer than :data:`MIN_OUTLIER_VALUES` values: none.
    """
    if len(values) < MIN_OUTLIER_VALUES:
        return [False] * len(values)
    med = statistics.median(values)
    mad = 1.4826 * statistics.median(abs(v - med) for v in values)
    kind, size = OUTLIER_FLOORS.get(key, ("relative", 0.10))
    floor = size * abs(med) if kind == "relative" else size
    return [abs(v - med) > max(OUTLIER_MADS * mad, floor) for v in values]


def outlier_rule_text() -> str:
    """The outlier rule in words, for the page."""
    names = {"seconds": "time", "mask_volume_ml": "mask volume", "qc_psnr": "PSNR", "qc_ssim": "SSIM",
             "qc_mae": "MAE"}
    floors = ", ".join(f"{names[k]} {size:.0%}" if kind == "relative" else f"{names[k]} {size:g}"
                       + (" dB" if k == "qc_psnr" else "") for k, (kind, size) in OUTLIER_FLOORS.items())
    return (f"Red: more than {OUTLIER_MADS:g} median absolute deviations from the median and further from it "
            f"than {floors} (of the median where a percentage); with fewer than {MIN_OUTLIER_VALUES} values "
            "no dot is red.")


def qc_plot(rows: list[dict[str, Any]]) -> str:
    """An inline SVG: one strip per QC number, a dot per output (hover: who), outliers in red.

    Outliers as :func:`outliers` (beyond 3 MADs and a per-measure floor, never with < 5 values).
    Empty when fewer than two participants have numbers.
    """
    strips = []
    for key, label in PLOTTED:
        points = [(r, _float(r.get(key))) for r in rows]
        points = [(r, v) for r, v in points if v is not None]
        if len({r["participant_id"] for r, _ in points}) >= 2:
            strips.append((key, label, points))
    if not strips:
        return ""
    width, left, right, height = 1000, 250, 30, 46
    svg = [f'<svg class="qc-plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height * len(strips) + 10}"'
           ' role="img" aria-label="QC numbers across participants">']
    for i, (key, label, points) in enumerate(strips):
        y0 = 10 + i * height
        values = [v for _, v in points]
        lo, hi = min(values), max(values)
        span = (hi - lo) or max(abs(hi), 1.0)
        lo, hi = lo - 0.05 * span, hi + 0.05 * span
        flags = outliers(key, values)
        svg.append(f'<text x="0" y="{y0 + 20}">{html.escape(label)}</text>'
                   f'<line x1="{left}" x2="{width - right}" y1="{y0 + 16}" y2="{y0 + 16}" stroke="#adb5bd"/>'
                   f'<text x="{left}" y="{y0 + 40}" fill="#6c757d">{lo:.4g}</text>'
                   f'<text x="{width - right}" y="{y0 + 40}" fill="#6c757d" text-anchor="end">{hi:.4g}</text>')
        for j, (row, value) in enumerate(points):
            x = left + (value - lo) / (hi - lo) * (width - left - right)
            y = y0 + 16 + ((j % 5) - 2) * 3  # a little vertical jitter so equal values stay visible
            outlier = flags[j]
            who = f"{row['participant_id']} {row['session_id']} {row['target']}: {value:.4g}"
            link = html.escape(f"{row['participant_id']}.html#{Path(row['file']).name.split('.')[0]}")
            cls = ' class="outlier"' if outlier else ""
            svg.append(f'<a href="{link}"><circle cx="{x:.1f}" cy="{y}" r="5"{cls}>'
                       f"<title>{html.escape(who)}</title></circle></a>")
            if outlier:
                svg.append(f'<text x="{x:.1f}" y="{y0 + 7}" text-anchor="middle" fill="#e03131">'
                           f'{html.escape(row["participant_id"])}</text>')
    svg.append("</svg>")
    return "".join(svg)


def render_html(rows: list[dict[str, Any]], missing: dict[str, list[str]]) -> str:
    """The group HTML page: sortable QC table, QC plot, participants missing outputs (no network)."""
    esc = html.escape
    head = "".join(f'<th scope="col" data-key="{esc(key)}">{esc(label)}</th>' for key, label in HTML_COLUMNS)
    body = []
    for row in rows:
        cells = []
        for key, _ in HTML_COLUMNS:
            value = str(row.get(key, "n/a"))
            text = esc(value)
            if key in {"file", "source"} and value != "n/a":  # the folders repeat participant and session
                text = f'<span title="{text}">{esc(Path(value).name)}</span>'
            if key in {"participant_id", "file"}:
                anchor = Path(row["file"]).name.split(".")[0]
                text = f'<a href="{esc(row["participant_id"])}.html#{esc(anchor)}">{text}</a>'
            elif key == "mask_warning" and value != "n/a":
                cells.append(f'<td class="warning"><span class="fail">{text}</span></td>')
                continue
            numeric = _float(value) is not None and key not in {"participant_id", "session_id", "run"}
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    miss = "".join(
        f"<li><b>{esc(sub)}</b><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul></li>"
        for sub, items in sorted(missing.items())
    ) or "<li>none</li>"
    plot = qc_plot(rows)
    plot_html = (f"<h2>QC across participants</h2>{plot}<p class=\"note\">One dot per synthetic image; hover for "
                 "who, click to open the report. " + html.escape(outlier_rule_text()) + "</p>"
                 if plot else "")
    n_participants = len({r["participant_id"] for r in rows})
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>tumsyn group report</title><style>{CSS}</style></head><body>\n"
        f"<h1>tumsyn group report</h1><p>{len(rows)} synthetic images from {n_participants} participants "
        f"(tumsyn {esc(__version__)}). Click a column header to sort.</p>\n"
        f"<h2>Outputs</h2><div class=\"table-wrap\"><table class=\"sortable\" id=\"qc-table\"><thead><tr>{head}"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>\n{plot_html}\n"
        f"<h2 class=\"fail\">Participants missing outputs</h2><ul>{miss}</ul>\n"
        f"<script>{SORT_JS}</script>\n</body></html>\n"
    )


def write_group_reports(out_dir: str | Path) -> GroupSummary:
    """Aggregate every synthetic image's sidecar in out_dir into TSVs (one per target) and an HTML page."""
    out_dir = Path(out_dir)
    records = synthetic_outputs(out_dir)
    if not records and not participants_in(out_dir):
        raise NoInputError("no participant-level outputs found (run the participant level first)", path=out_dir)
    rows = [{**_row(rec), **_mask_columns(out_dir, rec)} for rec in records]
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
