"""``tumsyn simulate OUT_DIR``: write a simulated BIDS dataset (MR physics from tissue maps).

Several values may be given comma-separated (``--contrasts T1w,T2w``) or by repeating the flag.
Heavy imports (numpy/scipy/nibabel) stay inside the command body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tumsyn_bids.errors import TumsynError, UsageError


def _split(values: Optional[list[str]]) -> list[str]:
    return [v for raw in values or [] for v in raw.replace(",", " ").split()]


def parse_extra(values: Optional[list[str]]) -> dict[tuple[int, int], list[str]]:
    """``SUB[:SES]=C1[+C2]`` items (1-based indices) -> {(sub, ses): [contrasts]}."""
    out: dict[tuple[int, int], list[str]] = {}
    for item in values or []:
        where, _, what = item.partition("=")
        sub, _, ses = where.partition(":")
        try:
            key = (int(sub), int(ses or 1))
        except ValueError:
            raise UsageError(f"--extra {item!r}: expected SUB[:SES]=CONTRAST, e.g. 1:1=T2w") from None
        if not what:
            raise UsageError(f"--extra {item!r}: no contrast after '='")
        out.setdefault(key, []).extend(c for c in what.replace("+", " ").split())
    return out


def parse_thick_slice(value: Optional[str]) -> tuple[int, float] | None:
    """``AXIS:THICKNESS`` (axis 0, 1, 2 or x, y, z of the array) -> (axis, mm)."""
    if not value:
        return None
    axis, _, thick = value.partition(":")
    axes = {"0": 0, "1": 1, "2": 2, "x": 0, "y": 1, "z": 2}
    try:
        result = (axes[axis.strip().lower()], float(thick))
    except (KeyError, ValueError):
        raise UsageError(f"--thick-slice {value!r}: expected AXIS:THICKNESS_MM, e.g. 2:5") from None
    if result[1] <= 0:
        raise UsageError(f"--thick-slice {value!r}: thickness must be positive")
    return result


def simulate(
    out_dir: Path = typer.Argument(..., help="Folder of the BIDS dataset to write."),
    subjects: int = typer.Option(3, "--subjects", min=1, help="Number of subjects."),
    contrasts: Optional[list[str]] = typer.Option(
        None, "--contrasts", "--contrast", metavar="C", help="Contrasts of every session (default T1w)."),
    sessions: Optional[list[str]] = typer.Option(
        None, "--sessions", metavar="N", help="Sessions per subject, cycled over subjects (e.g. 2,1,1)."),
    extra: Optional[list[str]] = typer.Option(
        None, "--extra", metavar="SUB[:SES]=C", help="Extra contrasts for one session, e.g. 1:1=T2w."),
    voxel: Optional[list[str]] = typer.Option(None, "--voxel", metavar="MM", help="Voxel size: one value or X,Y,Z."),
    field_strength: float = typer.Option(3.0, "--field-strength", metavar="TESLA"),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed -> identical files)."),
    phantom: str = typer.Option("mni", "--phantom", help="mni (nilearn ICBM152, no data needed) or labelmap."),
    labelmap: Optional[list[Path]] = typer.Option(
        None, "--labelmap", metavar="PATH", help="Label map(s) for --phantom labelmap (cycled over subjects)."),
    skull_strip: bool = typer.Option(False, "--skull-strip", help="Zero everything outside the brain mask."),
    thick_slice: Optional[str] = typer.Option(None, "--thick-slice", metavar="AXIS:MM",
                                              help="Thick-slice acquisition along an array axis, e.g. 2:5."),
    snr: float = typer.Option(30.0, "--snr", help="Mean brain signal over noise sigma."),
    no_noise: bool = typer.Option(False, "--no-noise"),
    no_bias: bool = typer.Option(False, "--no-bias"),
    no_deform: bool = typer.Option(False, "--no-deform"),
) -> None:
    """Simulate N subjects x sessions x contrasts into a BIDS dataset, ground truth in derivatives/groundtruth."""
    try:
        written = _run(locals())
    except TumsynError as exc:
        typer.echo(f"tumsyn simulate: error: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code)) from None
    typer.echo(f"wrote {len(written)} images to {out_dir}")


def _run(v: dict) -> list[Path]:
    from tumsyn_bids.contrasts import get_contrast

    contrasts = _split(v["contrasts"]) or ["T1w"]
    extra = parse_extra(v["extra"])
    for name in contrasts + [c for cs in extra.values() for c in cs]:
        try:
            get_contrast(name)
        except KeyError as exc:
            raise UsageError(f"--contrasts: {exc.args[0]}") from None
    contrasts = [get_contrast(c).name for c in contrasts]
    extra = {k: [get_contrast(c).name for c in cs] for k, cs in extra.items()}
    try:
        sessions = [int(s) for s in _split(v["sessions"])] or [1]
        voxel = [float(x) for x in _split(v["voxel"])] or [1.0]
    except ValueError:
        raise UsageError("--sessions and --voxel take numbers") from None
    if len(voxel) not in (1, 3) or min(voxel) <= 0:
        raise UsageError(f"--voxel: give one or three positive sizes in mm, got {voxel}")
    if min(sessions) < 1:
        raise UsageError("--sessions: every subject needs at least one session")
    if v["field_strength"] <= 0 or v["snr"] <= 0:
        raise UsageError("--field-strength and --snr must be positive")
    for (sub, ses) in extra:
        if not 1 <= sub <= v["subjects"] or not 1 <= ses <= sessions[(sub - 1) % len(sessions)]:
            raise UsageError(f"--extra {sub}:{ses}: no such subject/session in this dataset")
    thick = parse_thick_slice(v["thick_slice"])
    phantom_kind = v["phantom"].lower()
    if phantom_kind not in ("mni", "labelmap"):
        raise UsageError(f"--phantom {v['phantom']!r}: choose mni or labelmap")
    if phantom_kind == "labelmap" and not v["labelmap"]:
        raise UsageError("--phantom labelmap needs at least one --labelmap PATH")
    for path in v["labelmap"] or []:
        if not Path(path).is_file():
            raise UsageError("label map not found", path=path)

    from tumsyn_bids.physics.bids_writer import DatasetSpec, simulate_dataset
    from tumsyn_bids.physics.phantoms import load_labelmap_phantom, mni_phantom

    vox = voxel[0] if len(voxel) == 1 else tuple(voxel)
    if phantom_kind == "mni":
        base = mni_phantom(1.0 if min(voxel) < 2 else 2.0)

        def phantom_for(i: int):
            return base
    else:
        cache: dict[Path, object] = {}
        paths = list(v["labelmap"])

        def phantom_for(i: int):
            path = paths[i % len(paths)]
            if path not in cache:
                cache.clear()
                cache[path] = load_labelmap_phantom(path)
            return cache[path]

    spec = DatasetSpec(subjects=v["subjects"], contrasts=contrasts, sessions=sessions, extra=extra,
                       voxel_size=vox, field_strength=v["field_strength"], seed=v["seed"],
                       skull_strip=v["skull_strip"], thick_slice=thick, noise=not v["no_noise"], snr=v["snr"],
                       bias=not v["no_bias"], deform=not v["no_deform"])
    try:
        return simulate_dataset(v["out_dir"], phantom_for, spec, log=lambda line: typer.echo(line, err=True))
    except ValueError as exc:
        if isinstance(exc, TumsynError):
            raise
        raise UsageError(str(exc)) from None
