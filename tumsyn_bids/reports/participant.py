"""``sub-X.html``: what was synthesized for one participant, from what, how, and how well."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from tumsyn_bids import __version__
from tumsyn_bids.bids.derivatives import atomic_write_text
from tumsyn_bids.reports.collect import crash_files, crash_summary, planned_outputs, synthetic_outputs

CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1000px;padding:1em;color:#222}
h1{border-bottom:2px solid #445;padding-bottom:.2em} h2{margin-top:1.6em;color:#334}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.9em} th{background:#eef}
code{background:#f4f4f4;padding:0 .2em;word-break:break-all} img{max-width:100%;border:1px solid #999}
.fail{color:#b00;font-weight:bold} .ok{color:#080} .note{color:#666;font-size:.85em}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _fmt_qc(qc: dict[str, Any]) -> str:
    parts = []
    for region in ("masked", "whole"):
        scores = qc.get(region)
        if isinstance(scores, dict):
            values = ", ".join(f"{k.upper()} {v:.3f}" for k, v in scores.items() if isinstance(v, (int, float)))
            parts.append(f"{region}: {values}")
    return _esc("; ".join(parts) or "n/a")


def render_participant(out_dir: str | Path, subject: str, *, run_info: dict[str, Any] | None = None) -> str:
    """The HTML text of ``sub-<subject>.html`` built from out_dir."""
    out_dir = Path(out_dir)
    outputs = synthetic_outputs(out_dir, subject)
    planned = planned_outputs(out_dir, subject)
    found = {str(rec.path) for rec in outputs}
    missing = [p for p in planned if p.get("output") not in found]
    crashes = crash_files(out_dir, subject)
    run_info = run_info or {}
    summary = [
        ("Participant", _esc(f"sub-{subject}")),
        ("Synthetic images", _esc(len(outputs))),
        ("Missing planned outputs", f'<span class="{"fail" if missing else "ok"}">{len(missing)}</span>'),
        ("tumsyn version", _esc(__version__)),
        ("Report written", _esc(time.strftime("%Y-%m-%d %H:%M:%S"))),
    ]
    summary += [(k, _esc(v)) for k, v in run_info.items()]
    parts = [f"<h1>tumsyn report: sub-{_esc(subject)}</h1>", "<h2>Summary</h2>", _table(summary)]
    for rec in outputs:
        sc = rec.sidecar
        parts.append(f"<h2 id=\"{_esc(rec.stem)}\">{_esc(rec.target)}: <code>{_esc(rec.path)}</code></h2>")
        synth_fig = Path(f"sub-{subject}") / "figures" / f"{rec.stem}_synth.png"
        if (out_dir / synth_fig).is_file():
            parts.append(f'<p><img src="{_esc(synth_fig.as_posix())}" alt="source and synthetic images"></p>'
                         '<p class="note">Rows: source (red line: brain mask used) and synthetic image, '
                         'same world point in three planes.</p>')
        rows = [
            ("Sources", "<br>".join(f"<code>{_esc(s)}</code>" for s in sc.get("Sources", []))),
            ("Prompt", f"<code>{_esc(sc.get('Prompt'))}</code>"),
            ("Model", _esc(sc.get("ModelName"))),
            ("Weights sha256", f"<code>{_esc(sc.get('ModelWeightsSHA256'))}</code>"),
            ("Device", _esc(sc.get("Device"))),
            ("Voxel size (mm)", _esc(sc.get("VoxelSize"))),
            ("Skull-strip method", _esc(sc.get("SkullStripMethod"))),
            ("Output masked to brain", _esc(sc.get("MaskedOutput"))),
            ("Synthesis time (s)", _esc(sc.get("SynthesisSeconds"))),
            ("Source acquisition", _esc(sc.get("SourceAcquisition"))),
        ]
        parts.append(_table(rows))
        qc = sc.get("QC")
        if isinstance(qc, dict):
            parts.append("<h3>Real vs synthetic</h3>")
            qc_fig = Path(f"sub-{subject}") / "figures" / f"{rec.stem}_qc.png"
            if (out_dir / qc_fig).is_file():
                parts.append(f'<p><img src="{_esc(qc_fig.as_posix())}" alt="real vs synthetic"></p>')
            parts.append(_table([("Acquired image", f"<code>{_esc(qc.get('RealImage'))}</code>"),
                                 ("Registration", _esc(qc.get("Registration"))),
                                 ("Scores", _fmt_qc(qc))]))
    if missing or crashes:
        parts.append('<h2 class="fail">Errors</h2><ul>')
        for item in missing:
            parts.append(f"<li>not written: <code>{_esc(item.get('output'))}</code></li>")
        for crash in crashes:
            parts.append(f"<li><code>{_esc(crash)}</code>: {_esc(crash_summary(out_dir / crash))}</li>")
        parts.append("</ul>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>tumsyn: sub-{_esc(subject)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_participant_report(out_dir: str | Path, subject: str, *, run_info: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/sub-<subject>.html`` atomically."""
    path = Path(out_dir) / f"sub-{subject}.html"
    return atomic_write_text(path, render_participant(out_dir, subject, run_info=run_info))
