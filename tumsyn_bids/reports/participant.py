"""``sub-X.html`` assembled from the reportlets in ``sub-X/figures`` (the nipreps report layout).

Sections: Summary, one per synthetic output (brain mask, source <-> synthetic flicker, acquired
<-> synthetic flicker with the QC numbers, provenance table, tissue maps), Errors, About. Built
from OUTPUT_DIR alone, styles inline, no script and nothing fetched: it opens offline.
"""

from __future__ import annotations

import html
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from tumsyn_bids import __version__
from tumsyn_bids.bids.derivatives import atomic_write_text, read_json
from tumsyn_bids.reports.collect import (
    PLAN_FILE,
    OutputRecord,
    crash_files,
    crash_summary,
    mask_record,
    mask_warning,
    planned_outputs,
    synthetic_outputs,
)
from tumsyn_bids.reports.reportlets import reportlet_relpath

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#212529;
line-height:1.45;padding:4.2em 1.2em 2em}
nav{position:fixed;top:0;left:0;right:0;background:#f8f9fa;border-bottom:1px solid #dee2e6;z-index:9;
padding:.55em 1.2em;display:flex;flex-wrap:wrap;gap:.2em 1.2em;font-size:.95em}
nav a{color:#495057;text-decoration:none} nav a:hover{color:#000} nav b{margin-right:.6em}
main{max-width:1400px;margin:0 auto}
h1{font-size:1.7em;padding-top:1.2em;margin:0 0 .4em;border-bottom:1px solid #dee2e6}
h2{font-size:1.25em;margin:1.4em 0 .3em} h3{font-size:1.05em;margin:1em 0 .3em;color:#495057}
table{border-collapse:collapse;margin:.4em 0} td,th{border:1px solid #dee2e6;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.88em} th{background:#f1f3f5;font-weight:600}
code{background:#f1f3f5;padding:0 .25em;border-radius:3px;word-break:break-all;font-size:.92em}
.reportlet{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.reportlet .figure{flex:1 1 820px;min-width:0} .reportlet .side{flex:0 1 20em}
.svg-reportlet{width:100%;display:block;background:#000} img.png-reportlet{max-width:100%}
.elem-caption{color:#495057;font-size:.9em;margin:.3em 0} .elem-filename{font-size:.8em;color:#6c757d}
.fail{color:#b02a37;font-weight:600} .ok{color:#146c43} .warn{background:#fff3cd}
.note{color:#6c757d;font-size:.88em}
"""

FLICKER_NOTE = "Hover over the panels with the mouse pointer to alternate the two images."


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(rows: list[tuple[str, str]], cls: str = "") -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>' if cls else f"<table>{body}</table>"


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else _esc(value)


def command_line() -> str:
    """How this process was started, as a ``tumsyn-bids`` command line."""
    return shlex.join(["tumsyn-bids", *sys.argv[1:]])


def svg_reportlet(relpath: str | Path, *, flicker: bool, alt: str) -> str:
    """An SVG reportlet: ``<object>`` for a flicker (hover works there), ``<img>`` for a still."""
    src = _esc(Path(relpath).as_posix())
    if flicker:
        element = (f'<object class="svg-reportlet" type="image/svg+xml" data="{src}" aria-label="{_esc(alt)}">'
                   f"Problem loading figure {src}.</object>")
    else:
        element = f'<img class="svg-reportlet" src="{src}" alt="{_esc(alt)}">'
    return f'{element}<div class="elem-filename">Get figure file: <a href="{src}">{src}</a></div>'


def _value(value: Any) -> str:
    """A sidecar value as HTML: numbers as written, nested dicts and lists spelled out."""
    if isinstance(value, bool) or value is None:
        return _esc(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "; ".join(f"{_esc(k)}: {_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "<br>".join(_value(v) for v in value)
    return _esc(value)


def mask_rows(mask_sidecar: dict[str, Any]) -> list[tuple[str, str]]:
    """Skull-strip method, volume and, when the writer recorded them, the ``MaskQC`` entries."""
    rows = [("Method", _esc(mask_sidecar.get("SkullStripMethod", "n/a")))]
    if mask_sidecar.get("BrainVolumeMl") is not None:
        rows.append(("Brain volume (mL)", _value(mask_sidecar["BrainVolumeMl"])))
    if mask_sidecar.get("SkullStripDetail"):
        rows.append(("Detail", _esc(mask_sidecar["SkullStripDetail"])))
    mask_qc = mask_sidecar.get("MaskQC")
    if isinstance(mask_qc, dict):
        rows += [(f"MaskQC {key}", _value(value)) for key, value in mask_qc.items() if key != "Warning"]
        if mask_qc.get("Warning"):
            rows.append(("MaskQC Warning", f'<span class="fail">{_esc(mask_qc["Warning"])}</span>'))
    return rows


def qc_rows(qc: dict[str, Any]) -> list[tuple[str, str]]:
    """The real-vs-synthetic numbers (inside the brain mask first) and how they were obtained."""
    rows = []
    for region, label in (("masked", "brain mask"), ("whole", "whole image")):
        scores = qc.get(region)
        if isinstance(scores, dict):
            rows += [(f"{key.upper()} ({label})", _num(value)) for key, value in scores.items()]
    rows += [("Acquired image", f"<code>{_esc(qc.get('RealImage'))}</code>"),
             ("Registration", _esc(qc.get("Registration"))),
             ("Normalisation", _esc(qc.get("Normalisation")))]
    return [(k, v) for k, v in rows if v not in ("", "<code></code>")]


def source_rows(entries: list[dict[str, Any]]) -> str:
    """One table row per source of a multi-source output: the source, its role and its registration QC."""
    head = "<tr><th>#</th><th>Source</th><th>Contrast</th><th>Use</th><th>Registration QC</th></tr>"
    body = []
    for number, entry in enumerate(entries, 1):
        qc = entry.get("RegistrationQC") or {}
        if qc:
            value = qc.get("Value")
            check = (f"NMI {_num(value)} (threshold {_esc(qc.get('Threshold'))}), correction "
                     f"{_num(qc.get('ShiftMm'), 1)} mm / {_num(qc.get('RotationDeg'), 1)} deg: "
                     + ('<span class="ok">kept</span>' if qc.get("Kept") else '<span class="fail">dropped</span>'))
        else:
            check = "n/a (defines the grid)"
        use = _esc(entry.get("Role"))
        if entry.get("Warning"):
            use += f'<br><span class="fail">{_esc(entry["Warning"])}</span>'
        body.append(f"<tr><td>{number}</td><td><code>{_esc(entry.get('Source'))}</code></td>"
                    f"<td>{_esc(entry.get('Contrast') or '')}</td><td>{use}</td><td>{check}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _figure(out_dir: Path, svg: Path, png: Path | None, *, flicker: bool, alt: str) -> str:
    if (out_dir / svg).is_file():
        return svg_reportlet(svg, flicker=flicker, alt=alt)
    if png is not None and (out_dir / png).is_file():  # outputs written before the reportlets existed
        src = _esc(png.as_posix())
        return f'<img class="png-reportlet" src="{src}" alt="{_esc(alt)}">'
    return f'<p class="fail">Reportlet not drawn: <code>{_esc(svg.as_posix())}</code> (see the run log).</p>'


def _reportlet(title: str, figure: str, *, caption: str = "", side: str = "", anchor: str = "") -> str:
    ident = f' id="{_esc(anchor)}"' if anchor else ""
    side_html = f'<div class="side">{side}</div>' if side else ""
    cap = f'<p class="elem-caption">{caption}</p>' if caption else ""
    return (f'<div class="reportlet-block"{ident}><h2>{_esc(title)}</h2>{cap}'
            f'<div class="reportlet"><div class="figure">{figure}</div>{side_html}</div></div>')


def output_section(out_dir: Path, rec: OutputRecord) -> str:
    """One output's reportlets, QC numbers and provenance."""
    sc = rec.sidecar
    stem = rec.stem
    figures = Path(rec.path.parts[0]) / "figures"
    source = next((s[len("bids:raw:"):] for s in sc.get("Sources", []) if str(s).startswith("bids:raw:")), None)
    source_name = Path(source).name if source else "the source image"
    mask_rel, mask_sc = mask_record(out_dir, rec)
    parts = [f'<div id="{_esc(stem)}"><h1>{_esc(rec.target)} synthesized from <code>{_esc(source_name)}</code></h1>',
             f'<p class="note">Output: <code>{_esc(rec.path.as_posix())}</code></p>']
    if mask_rel is not None:
        parts.append(_reportlet(
            "Brain mask", _figure(out_dir, reportlet_relpath(mask_rel, "mask"), None, flicker=False,
                                  alt="source image with the brain-mask contour"),
            caption=f"The source image with the contour (red) of the brain mask used to skull-strip the "
                    f"synthesis input: <code>{_esc(mask_rel.as_posix())}</code>.",
            side=_table(mask_rows(mask_sc)), anchor=f"{stem}-mask"))
    parts.append(_reportlet(
        "Source ↔ synthetic", _figure(out_dir, reportlet_relpath(rec.path, "source"),
                                      figures / f"{stem}_synth.png", flicker=True, alt="source and synthetic"),
        caption=f"The synthetic {_esc(rec.target)} image and its source at the same world positions, brain "
                f"mask contour on both. {FLICKER_NOTE}", anchor=f"{stem}-source"))
    qc = sc.get("QC")
    if isinstance(qc, dict):
        parts.append(_reportlet(
            "Acquired ↔ synthetic", _figure(out_dir, reportlet_relpath(rec.path, "acquired"),
                                            figures / f"{stem}_qc.png", flicker=True,
                                            alt="acquired and synthetic"),
            caption=f"The session's acquired {_esc(rec.target)} image after the QC registration and the "
                    f"synthetic image, both inside the brain mask. {FLICKER_NOTE}",
            side="<h3>Real vs synthetic</h3>" + _table(qc_rows(qc)), anchor=f"{stem}-acquired"))
    voxel = sc.get("VoxelSize")
    rows = [
        ("Prompt", f"<code>{_esc(sc.get('Prompt'))}</code>"),
        ("Model", _esc(sc.get("ModelName"))),
        ("Weights sha256", f"<code>{_esc(sc.get('ModelWeightsSHA256'))}</code>"),
        ("Device", _esc(sc.get("Device"))),
        ("Voxel size (mm)", _esc(" x ".join(f"{v:g}" for v in voxel) if isinstance(voxel, list) else voxel)),
        ("Synthesis time (s)", _num(sc.get("SynthesisSeconds"), 2)),
        ("Skull-strip method", _esc(sc.get("SkullStripMethod"))),
        ("Output masked to brain", _esc(sc.get("MaskedOutput"))),
        ("Sources", "<br>".join(f"<code>{_esc(s)}</code>" for s in sc.get("Sources", []))),
        ("Source acquisition", _esc(", ".join(f"{k} {v}" for k, v in (sc.get("SourceAcquisition") or {}).items()))),
    ]
    parts.append(f'<div id="{_esc(stem)}-synthesis"><h2>Synthesis</h2>{_table(rows)}</div>')
    if sc.get("SynthesisSources"):
        parts.append(f'<div id="{_esc(stem)}-sources"><h2>Sources</h2><p class="elem-caption">Every source '
                     "planned for this image (multi-source synthesis): the first defines the output grid and the "
                     "brain mask; each further one was registered rigidly to it and checked.</p>"
                     f'{source_rows(list(sc["SynthesisSources"]))}</div>')
        for number, entry in enumerate(sc["SynthesisSources"][1:], 2):
            svg = reportlet_relpath(rec.path, f"coreg{number}")
            if (out_dir / svg).is_file():
                name = Path(str(entry.get("Source", ""))).name
                state = "used" if entry.get("Used") else "not used"
                parts.append(_reportlet(
                    f"Source {number}: {name} ({state})", svg_reportlet(svg, flicker=True, alt=f"{name} registered"),
                    caption=f"The source image and the further source <code>{_esc(name)}</code> after its rigid "
                            f"registration, brain mask contour on both. {FLICKER_NOTE}",
                    anchor=f"{stem}-source{number}"))
    maps_svg = reportlet_relpath(rec.path, "maps")
    if (out_dir / maps_svg).is_file():
        parts.append(_reportlet(
            "Tissue-parameter maps", svg_reportlet(maps_svg, flicker=False, alt="predicted tissue maps"),
            caption="T1, T2, T2* and PD predicted by the model while synthesizing this image (model "
                    "estimates, not measurements).", anchor=f"{stem}-maps"))
    parts.append("</div>")
    return "\n".join(parts)


def render_participant(out_dir: str | Path, subject: str, *, run_info: dict[str, Any] | None = None) -> str:
    """The HTML text of ``sub-<subject>.html`` built from out_dir."""
    out_dir = Path(out_dir)
    outputs = synthetic_outputs(out_dir, subject)
    planned = planned_outputs(out_dir, subject)
    found = {rec.path.as_posix() for rec in outputs}
    missing = [p for p in planned if p.get("output") not in found]
    crashes = crash_files(out_dir, subject)
    run_info = dict(run_info or {})
    plan = read_json(out_dir / f"sub-{subject}" / "log" / PLAN_FILE) or {}
    run_id = run_info.pop("Run", None) or plan.get("run_uuid") or "n/a"
    command = run_info.pop("Command line", None) or command_line()
    sessions = sorted({rec.entities["ses"] for rec in outputs if rec.entities.get("ses")})
    warnings = []
    for rec in outputs:
        warning = mask_warning(mask_record(out_dir, rec)[1])
        if warning:
            warnings.append(f"<li><a href=\"#{_esc(rec.stem)}-mask\">{_esc(rec.stem)}</a>: "
                            f"{'' if warning.startswith('brain mask') else 'brain mask: '}{_esc(warning)}</li>")
        for entry in rec.sidecar.get("SynthesisSources") or []:
            if entry.get("Warning"):
                warnings.append(f"<li><a href=\"#{_esc(rec.stem)}-sources\">{_esc(rec.stem)}</a>: source "
                                f"<code>{_esc(entry.get('Source'))}</code>: {_esc(entry['Warning'])}</li>")
    n_errors = len(missing) + len(crashes)
    summary = [
        ("Participant", _esc(f"sub-{subject}")),
        ("Sessions", _esc(", ".join(f"ses-{s}" for s in sessions) or "n/a")),
        ("Synthetic images", "<br>".join(
            f'<a href="#{_esc(rec.stem)}">{_esc(rec.target)}</a>: <code>{_esc(rec.path.as_posix())}</code>'
            for rec in outputs) or "none"),
        ("Errors", f'<a class="{"fail" if n_errors else "ok"}" href="#errors">{n_errors}</a>'),
    ]
    nav = ['<nav><b>tumsyn</b><a href="#summary">Summary</a>']
    nav += [f'<a href="#{_esc(rec.stem)}">{_esc(rec.stem)}</a>' for rec in outputs]
    nav += ['<a href="#errors">Errors</a><a href="#about">About</a></nav>']
    parts = ["".join(nav), "<main>", '<div id="summary"><h1>Summary</h1>', _table(summary)]
    if warnings:
        parts.append(f'<p class="fail">Warnings</p><ul>{"".join(warnings)}</ul>')
    parts.append("</div>")
    parts += [output_section(out_dir, rec) for rec in outputs]
    parts.append('<div id="errors"><h1>Errors</h1>')
    if n_errors:
        parts.append("<ul>")
        for item in missing:
            why = f": {_esc(item['failed'])}" if item.get("failed") else ""
            parts.append(f"<li class=\"fail\">not written: <code>{_esc(item.get('output'))}</code>{why}</li>")
        for crash in crashes:
            parts.append(f'<li><span class="fail">{_esc(crash_summary(out_dir / crash))}</span> '
                         f'(crash file <a href="{_esc(crash.as_posix())}"><code>{_esc(crash.as_posix())}'
                         "</code></a>)</li>")
        parts.append("</ul>")
    else:
        parts.append('<p class="ok">No errors to report.</p>')
    parts.append("</div>")
    about = [("tumsyn version", _esc(__version__)), ("Run", f"<code>{_esc(run_id)}</code>"),
             ("Command line", f"<code>{_esc(command)}</code>"),
             ("Report written", _esc(time.strftime("%Y-%m-%d %H:%M:%S %Z")))]
    about += [(k, _esc(v)) for k, v in run_info.items()]
    parts += ['<div id="about"><h1>About</h1>', _table(about), "</div>", "</main>"]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>tumsyn: sub-{_esc(subject)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_participant_report(out_dir: str | Path, subject: str, *, run_info: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/sub-<subject>.html`` atomically."""
    path = Path(out_dir) / f"sub-{subject}.html"
    return atomic_write_text(path, render_participant(out_dir, subject, run_info=run_info))
