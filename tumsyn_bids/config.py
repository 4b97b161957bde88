"""One frozen :class:`Settings` object per run, built by the CLI and saved as TOML.

The file ``<work_dir>/<run_uuid>/config.toml`` records exactly what a run was asked to do; it
can be loaded back with :meth:`Settings.from_toml` (``None`` values are left out of the TOML,
which has no null, and come back as ``None``).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tumsyn_bids import __version__


def new_run_uuid() -> str:
    """``<YYYYmmdd-HHMMSS>_<uuid4>``, as fMRIPrep names its runs."""
    return f"{datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4()}"


@dataclass(frozen=True)
class SourceSelector:
    """``--source`` as the CLI parsed it: what the user typed and the pybids entity filters it means.

    ``filters`` maps entity names (``suffix``, ``acquisition``, ``run``...) to wanted values.
    ``more``: the further ``--source`` options when the flag was repeated (multi-source synthesis: one
    source per option, in the order given).
    """

    spec: str
    filters: dict = field(default_factory=dict)
    more: tuple["SourceSelector", ...] = ()

    def __str__(self) -> str:
        return " ".join(s.spec for s in self.each())

    def each(self) -> tuple["SourceSelector", ...]:
        """One selector per ``--source`` option given."""
        return (SourceSelector(self.spec, self.filters), *self.more)

    def describe(self) -> str:
        """``suffix=T1w, acquisition=mprage``: the filters in one line."""
        return ", ".join(f"{k}={v}" for k, v in self.filters.items())


@dataclass(frozen=True)
class Settings:
    """Everything the command line decided. Paths are absolute."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str = "participant"
    participant_labels: tuple[str, ...] = ()  # without "sub-"; empty = all
    session_labels: tuple[str, ...] = ()  # without "ses-"; empty = all
    bids_filters: dict = field(default_factory=dict)  # {query: {entity: value}} from --bids-filter-file
    work_dir: Path = Path("work")
    bids_database_dir: Path | None = None
    nprocs: int | None = None
    omp_nthreads: int | None = None
    mem_mb: int | None = None
    stop_on_first_crash: bool = False
    verbosity: int = 0
    plugin_settings: dict | None = None  # parsed --use-plugin YAML
    skip_bids_validation: bool = False
    targets: tuple[str, ...] = ("T2w",)
    voxel_size: tuple[float, float, float] | None = None  # None = the source's voxel size
    source: SourceSelector | None = None  # parsed --source (repeated: .more)
    sources: str = "single"  # single: one source; auto: every usable contrast of the session (--sources)
    tr: float | None = None  # ms
    te: float | None = None  # ms
    ti: float | None = None  # ms
    fa: float | str | None = None  # degrees or "T2var"
    field_strength: float | None = None  # tesla
    vendor: str | None = None
    device: str = "auto"
    model: str = "tumsyn-small"
    weights: Path | None = None
    skull_strip: str = "auto"  # auto | on | off
    skip_existing: bool = False
    output_spaces: tuple[str, ...] = ("T1w",)
    mask_output: bool = False
    save_maps: bool = False  # also write the predicted tissue maps (physics-structured models only)
    refine: bool = True  # physics-consistency refinement against the source (physics-structured models)
    inference_mode: str = "fast"  # fast | faithful
    clean_workdir: bool = False
    resource_monitor: bool = False
    notrack: bool = False
    dry_run: bool = False  # plan, write config.toml and plan.json, print the plan, run nothing
    run_uuid: str = field(default_factory=new_run_uuid)
    version: str = __version__

    @property
    def run_dir(self) -> Path:
        """``<work_dir>/<run_uuid>``: this run's private corner of the work directory."""
        return Path(self.work_dir) / self.run_uuid

    @property
    def database_path(self) -> Path:
        """Where the pybids index lives: ``--bids-database-dir`` or ``<run_dir>/bids_db``."""
        return Path(self.bids_database_dir) if self.bids_database_dir else self.run_dir / "bids_db"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain TOML/JSON-friendly values; ``None`` entries dropped."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SourceSelector):
                value = {"spec": value.spec, "filters": json.dumps(value.filters, sort_keys=True),
                         **({"more": [{"spec": m.spec, "filters": json.dumps(m.filters, sort_keys=True)}
                                      for m in value.more]} if value.more else {})}
            elif f.name in _JSON and value is not None:
                value = json.dumps(value, sort_keys=True)  # TOML has no null; JSON keeps filter nulls
            value = _plain(value)
            if value is not None:
                out[f.name] = value
        return out

    def to_toml(self, path: Path | None = None) -> Path:
        """Write the settings atomically (default ``<run_dir>/config.toml``); return the path."""
        import tomli_w

        from tumsyn_bids.atomic import atomic_write_text

        path = Path(path) if path is not None else self.run_dir / "config.toml"
        return atomic_write_text(path, tomli_w.dumps({"tumsyn": self.to_dict()}))

    @classmethod
    def from_toml(cls, path: Path) -> "Settings":
        """Load settings written by :meth:`to_toml`."""
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))["tumsyn"]
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = _restore(f.name, data[f.name])
        return cls(**kwargs)


_PATHS = {"bids_dir", "output_dir", "work_dir", "bids_database_dir", "weights"}
_JSON = {"bids_filters", "plugin_settings"}  # stored as JSON text inside the TOML
_TUPLES = {"participant_labels", "session_labels", "targets", "output_spaces"}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    return value


def _restore(name: str, value: Any) -> Any:
    if name in _JSON:
        return json.loads(value)
    if name == "source":
        more = tuple(SourceSelector(m["spec"], json.loads(m["filters"])) for m in value.get("more", ()))
        return SourceSelector(value["spec"], json.loads(value["filters"]), more)
    if name in _PATHS:
        return Path(value)
    if name in _TUPLES:
        return tuple(value)
    if name == "voxel_size":
        return tuple(float(v) for v in value)
    return value
