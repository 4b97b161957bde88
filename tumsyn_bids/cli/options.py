"""Parsing helpers for the command line: pure functions, no heavy imports.

Each helper turns one raw option value into a checked Python value or raises
:class:`~tumsyn_bids.errors.UsageError` with one line naming the option (or file) and the problem.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

from tumsyn_bids.config import SourceSelector
from tumsyn_bids.contrasts import FILTER_QUERIES
from tumsyn_bids.errors import UsageError

# Options that take one or more values, fMRIPrep style (``--participant-label 01 02``);
# value = the most values one occurrence may take (None: until the next option).
MULTI_VALUE_OPTIONS: dict[str, int | None] = {
    "--participant-label": None,
    "--participant_label": None,
    "--participant-labels": None,
    "--participant_labels": None,
    "--session-label": None,
    "--session_label": None,
    "--session-id": None,
    "--target": None,
    "--targets": None,
    "--output-spaces": None,
    "--output_spaces": None,
    "--voxel": 3,
}

OUTPUT_SPACES = ("T1w", "MNI152NLin2009cAsym")

_ENTITY_ALIASES = {
    "acq": "acquisition", "rec": "reconstruction", "ce": "ceagent", "run": "run", "echo": "echo",
    "part": "part", "task": "task", "inv": "inv", "mt": "mt", "chunk": "chunk", "ses": "session",
    "sub": "subject", "flip": "flip",
}


def expand_multi_value(argv: Sequence[str], options: dict[str, int | None] = MULTI_VALUE_OPTIONS) -> list[str]:
    """Rewrite ``--opt a b c`` into ``--opt a --opt b --opt c`` so click can parse nargs+ options.

    Values are taken until the next token starting with ``-`` (or ``--``, which ends option
    parsing), or until the option's maximum count. ``--opt=a`` is left alone.
    """
    out: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        token = args[i]
        if token == "--":
            out.extend(args[i:])
            break
        if token in options:
            limit = options[token]
            values: list[str] = []
            j = i + 1
            while j < len(args) and not args[j].startswith("-") and (limit is None or len(values) < limit):
                values.append(args[j])
                j += 1
            if not values:
                out.append(token)  # let click report the missing value
            for value in values:
                out.extend([token, value])
            i = j
            continue
        out.append(token)
        i += 1
    return out


def strip_labels(values: Iterable[str] | None, prefix: str) -> tuple[str, ...]:
    """``["sub-01", "02", "01"]`` -> ``("01", "02")``: prefix removed, order kept, duplicates dropped."""
    out: list[str] = []
    for raw in values or ():
        for part in str(raw).replace(",", " ").split():
            label = part[len(prefix):] if part.startswith(prefix) else part
            if not re.fullmatch(r"[A-Za-z0-9]+", label):
                raise UsageError(f"{prefix}{label}: not a valid BIDS label (letters and digits only)")
            if label not in out:
                out.append(label)
    return tuple(out)


_MEM_UNITS = {"": 1.0, "m": 1.0, "mb": 1.0, "mib": 1.0, "g": 1024.0, "gb": 1024.0, "gib": 1024.0,
              "t": 1024.0**2, "tb": 1024.0**2, "tib": 1024.0**2, "k": 1 / 1024, "kb": 1 / 1024}


def parse_mem(value: str | None) -> int | None:
    """``--mem``: megabytes by default; ``8G``, ``8GB``, ``500M``, ``1.5T`` accepted."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    if match is None or match.group(2).lower() not in _MEM_UNITS:
        raise UsageError(f"--mem {value}: expected a size such as 8000, 8000M or 8G")
    mb = float(match.group(1)) * _MEM_UNITS[match.group(2).lower()]
    if mb < 1:
        raise UsageError(f"--mem {value}: must be at least 1 MB")
    return int(round(mb))


def parse_voxel(values: Sequence[str] | None) -> tuple[float, float, float] | None:
    """``--voxel X Y Z`` in mm, each > 0 (one value means isotropic)."""
    if not values:
        return None
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise UsageError(f"--voxel {' '.join(values)}: values must be numbers (mm)") from None
    if len(numbers) == 1:
        numbers = numbers * 3
    if len(numbers) != 3:
        raise UsageError(f"--voxel {' '.join(values)}: give three sizes X Y Z (mm) or one for isotropic")
    if any(not (n > 0) or n != n or n == float("inf") for n in numbers):
        raise UsageError(f"--voxel {' '.join(values)}: every size must be a positive number of mm")
    if any(n > 20 for n in numbers):
        raise UsageError(f"--voxel {' '.join(values)}: sizes above 20 mm are not brain MRI voxels")
    return (numbers[0], numbers[1], numbers[2])


def parse_positive(value: float | None, option: str) -> float | None:
    """A positive number or None."""
    if value is None:
        return None
    if not (value > 0):
        raise UsageError(f"{option} {value}: must be positive")
    return float(value)


def load_filter_file(path: Path | None) -> dict:
    """``--bids-filter-file``: JSON ``{query: {entity: value}}``; query names in :data:`FILTER_QUERIES`."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise UsageError(f"cannot read --bids-filter-file ({exc.strerror or exc})", path=path) from exc
    except ValueError as exc:
        raise UsageError(f"--bids-filter-file is not valid JSON ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise UsageError("--bids-filter-file must hold a JSON object {query: {entity: value}}", path=path)
    filters: dict[str, dict] = {}
    for query, entities in data.items():
        key = str(query).lower()
        if key not in FILTER_QUERIES:
            raise UsageError(
                f"--bids-filter-file: unknown query {query!r}; use {', '.join(FILTER_QUERIES)}", path=path
            )
        if not isinstance(entities, dict):
            raise UsageError(f"--bids-filter-file: query {query!r} must map entities to values", path=path)
        clean: dict = {}
        for entity, value in entities.items():
            name = _ENTITY_ALIASES.get(str(entity), str(entity))
            if name in ("subject", "session", "suffix", "datatype", "extension"):
                raise UsageError(
                    f"--bids-filter-file: entity {entity!r} is set by tumsyn-bids itself; use the label options",
                    path=path,
                )
            if not (value is None or isinstance(value, (str, int, float, list))):
                raise UsageError(f"--bids-filter-file: bad value for {query}.{entity}: {value!r}", path=path)
            clean[name] = value
        filters[key] = clean
    return filters


def parse_source(value: str | list[str] | tuple[str, ...] | None) -> SourceSelector | None:
    """``--source``: a suffix (``T2w``), an entity string (``acq-mprage_T1w``) or a JSON object.

    Returns the typed selector (its ``filters``: ``{"suffix": "T1w", "acquisition": "mprage"}``) or None.
    A repeated ``--source`` (a list) gives one selector per option: the first, ``more`` holding the others.
    """
    values = [value] if isinstance(value, str) or value is None else list(value)
    texts = [str(v).strip() for v in values if v is not None and str(v).strip()]
    if not texts:
        return None
    selectors = [SourceSelector(text, _source_filters(text)) for text in dict.fromkeys(texts)]
    first = selectors[0]
    return SourceSelector(first.spec, first.filters, tuple(selectors[1:]))


def _source_filters(text: str) -> dict:
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--source {text}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or not data:
            raise UsageError(f"--source {text}: JSON must be a non-empty object of entity filters")
        return {_ENTITY_ALIASES.get(k, k): v for k, v in data.items()}
    filters: dict = {}
    parts = text.split("_")
    for part in parts[:-1]:
        if "-" not in part:
            raise UsageError(f"--source {text}: expected entity-value pairs then a suffix, e.g. acq-mprage_T1w")
        key, _, val = part.partition("-")
        filters[_ENTITY_ALIASES.get(key, key)] = val
    last = parts[-1]
    if not all(re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)?", part) for part in parts):
        raise UsageError(f"--source {text}: expected a suffix (T2w) or entity-value pairs then a suffix")
    if "-" in last:
        key, _, val = last.partition("-")
        filters[_ENTITY_ALIASES.get(key, key)] = val
    else:
        filters["suffix"] = last
    return filters


def parse_output_spaces(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--output-spaces T1w MNI152NLin2009cAsym:res-2``: native (``T1w``) by default."""
    if not values:
        return ("T1w",)
    out: list[str] = []
    for value in values:
        name, _, spec = value.partition(":")
        if name not in OUTPUT_SPACES:
            raise UsageError(f"--output-spaces {value}: unknown space; use {' or '.join(OUTPUT_SPACES)}[:res-N]")
        if spec and not re.fullmatch(r"res-[0-9]+", spec):
            raise UsageError(f"--output-spaces {value}: the only modifier is res-N (e.g. {name}:res-2)")
        if spec and name == "T1w":
            raise UsageError(f"--output-spaces {value}: the native space takes no resolution modifier")
        if value not in out:
            out.append(value)
    return tuple(out)


def load_plugin_file(path: Path | None) -> dict | None:
    """``--use-plugin FILE``: nipype plugin YAML (``plugin:``, ``plugin_args:``)."""
    if path is None:
        return None
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read --use-plugin file ({exc.strerror or exc})", path=path) from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--use-plugin file is not valid YAML ({str(exc).splitlines()[0]})", path=path) from exc
    if not isinstance(data, dict) or "plugin" not in data:
        raise UsageError("--use-plugin file must be a YAML mapping with a 'plugin' key", path=path)
    if "plugin_args" in data and not isinstance(data["plugin_args"], dict):
        raise UsageError("--use-plugin: 'plugin_args' must be a mapping", path=path)
    return data
