"""From the parsed command-line values to :class:`~tumsyn_bids.config.Settings` (shared by both apps).

``tumsyn-bids`` (:mod:`tumsyn_bids.cli.main`) and ``tumsyn prompts`` (:mod:`tumsyn_bids.cli.prompts_cmd`)
both build their settings here, so neither imports the other. Pure parsing: no heavy imports.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from tumsyn_bids.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps start-up light
    from tumsyn_bids.config import Settings


class AnalysisLevel(str, Enum):
    participant = "participant"
    group = "group"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class SkullStrip(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


class Sources(str, Enum):
    auto = "auto"
    single = "single"


class InferenceMode(str, Enum):
    fast = "fast"
    faithful = "faithful"


def build_settings(values: dict) -> "Settings":
    """Check option values and the guards; return Settings (nothing is created on disk)."""
    from tumsyn_bids.cli import options as opt
    from tumsyn_bids.config import Settings
    from tumsyn_bids.contrasts import get_contrast
    from tumsyn_bids.prompts import parse_flip_angle

    bids_dir = Path(values["bids_dir"]).expanduser().resolve()
    if not bids_dir.exists():
        raise UsageError("BIDS_DIR does not exist", path=bids_dir)
    if not bids_dir.is_dir():
        raise UsageError("BIDS_DIR is not a directory", path=bids_dir)
    output_dir = Path(values["output_dir"]).expanduser().resolve()
    if output_dir == bids_dir:
        raise UsageError(
            f"OUTPUT_DIR must differ from BIDS_DIR; use e.g. {bids_dir / 'derivatives' / 'tumsyn'}", path=output_dir
        )
    if bids_dir in output_dir.parents and output_dir.relative_to(bids_dir).parts[0] != "derivatives":
        raise UsageError("OUTPUT_DIR inside BIDS_DIR must be under derivatives/", path=output_dir)
    work_dir = Path(values["work_dir"] or Path.cwd() / "work").expanduser().resolve()
    if work_dir == bids_dir or bids_dir in work_dir.parents:
        raise UsageError("the work directory must not be inside BIDS_DIR (use -w elsewhere)", path=work_dir)
    targets: list[str] = []
    for raw in values["target"] or ["T2w"]:
        for name in raw.replace(",", " ").split():
            try:
                canonical = get_contrast(name).name
            except KeyError as exc:
                raise UsageError(f"--target: {exc.args[0]}") from None
            if canonical not in targets:
                targets.append(canonical)
    try:
        fa = parse_flip_angle(values["fa"])
    except ValueError:
        raise UsageError(f"--fa {values['fa']}: expected degrees or T2var") from None
    if isinstance(fa, float):
        opt.parse_positive(fa, "--fa")
    weights = _weights_location(values["weights"])
    source = opt.parse_source(values["source"])  # typed; a malformed --source is rejected now
    sources = values.get("sources")
    sources = sources.value if isinstance(sources, Enum) else sources
    if sources is not None and sources not in {m.value for m in Sources}:
        raise UsageError(f"--sources {sources}: expected auto or single")
    if sources == "auto" and source is not None:
        raise UsageError("--sources auto and --source cannot be combined: --source picks the sources itself "
                         "(repeat it to pick several)")
    database = values["bids_database_dir"]
    vendor = values["vendor"]
    if vendor is not None and not vendor.strip():
        raise UsageError("--vendor: empty value")
    return Settings(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=values["analysis_level"].value,
        participant_labels=opt.strip_labels(values["participant_label"], "sub-"),
        session_labels=opt.strip_labels(values["session_label"], "ses-"),
        bids_filters=opt.load_filter_file(values["bids_filter_file"]),
        work_dir=work_dir,
        bids_database_dir=Path(database).expanduser().resolve() if database else None,
        nprocs=values["nprocs"],
        omp_nthreads=values["omp_nthreads"],
        mem_mb=opt.parse_mem(values["mem"]),
        stop_on_first_crash=values["stop_on_first_crash"],
        verbosity=values["verbose"],
        plugin_settings=opt.load_plugin_file(values["use_plugin"]),
        skip_bids_validation=values["skip_bids_validation"],
        targets=tuple(targets),
        voxel_size=opt.parse_voxel(values["voxel"]),
        source=source,
        sources=sources or "single",
        tr=opt.parse_positive(values["tr"], "--tr"),
        te=opt.parse_positive(values["te"], "--te"),
        ti=opt.parse_positive(values["ti"], "--ti"),
        fa=fa,
        field_strength=opt.parse_positive(values["field_strength"], "--field-strength"),
        vendor=vendor.strip() if vendor else None,
        device=values["device"].value,
        model=values["model"],
        weights=weights,
        skull_strip=values["skull_strip"].value,
        skip_existing=values["skip_existing"],
        output_spaces=opt.parse_output_spaces(values["output_spaces"]),
        mask_output=values["mask_output"],
        save_maps=bool(values.get("save_maps", False)),
        refine=bool(values.get("refine", True)),
        inference_mode=values["inference_mode"].value,
        clean_workdir=values["clean_workdir"],
        resource_monitor=values["resource_monitor"],
        notrack=values["notrack"],
        dry_run=bool(values.get("dry_run", False)),
    )


def _weights_location(value) -> Path | None:
    """``--weights``: a file, a folder (e.g. the published pair) or ``SYNTH.pth:STAGE1.pth``; each must exist."""
    import os

    if value is None:
        return None
    parts = [Path(part).expanduser().resolve() for part in str(value).split(os.pathsep) if part]
    if not parts:
        raise UsageError("--weights: empty value")
    for part in parts:
        if not part.exists():
            raise UsageError("--weights: no such file or folder", path=part)
        if len(parts) > 1 and not part.is_file():
            raise UsageError("--weights: each part of PATH1:PATH2 must be a file", path=part)
    if len(parts) > 2:
        raise UsageError(f"--weights: expected one file, one folder or two files (PATH1{os.pathsep}PATH2), "
                         f"got {len(parts)} paths")
    return Path(os.pathsep.join(str(part) for part in parts))
