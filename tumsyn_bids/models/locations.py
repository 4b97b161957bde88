"""Where weights are looked for, and file digests (no torch: the CLI imports this at start-up)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

ENV_WEIGHTS = "TUMSYN_WEIGHTS"

WeightsArg = str | os.PathLike | Sequence[str | os.PathLike] | None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def bundled_weights_path(model: str) -> Path:
    """Where the package keeps the bundled weights of ``model`` (the file may not exist)."""
    return Path(str(resources.files("tumsyn_bids") / "data" / "models" / f"{model}.pt"))


def as_location(weights: WeightsArg) -> str:
    """One location string: a path, or several paths joined with ``os.pathsep``."""
    if isinstance(weights, (str, os.PathLike)):
        return os.fspath(weights)
    return os.pathsep.join(os.fspath(w) for w in weights or ())


def split_location(location: str) -> list[Path]:
    return [Path(p) for p in location.split(os.pathsep) if p]


def weights_candidates(model: str, weights: WeightsArg = None, bundled: Path | None = None) -> list[tuple[str, str]]:
    """The search order as (source, location): ``--weights``, ``$TUMSYN_WEIGHTS``, bundled file."""
    out: list[tuple[str, str]] = []
    if weights is not None:
        out.append(("--weights", as_location(weights)))
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        out.append((ENV_WEIGHTS, env))
    out.append(("bundled", str(bundled if bundled is not None else bundled_weights_path(model))))
    return out
