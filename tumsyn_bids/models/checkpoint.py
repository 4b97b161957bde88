"""Checkpoint files: safe reading (``weights_only=True``), strict loading, native and published layouts.

Native format (one self-describing file)::

    {'format': 'tumsyn-native', 'version': 1,
     'spec': {'model': name, 'text_encoder': {'name': 'clip-text', 'args': {...}},
              'synthesis': {'name': 'lccd', 'args': {...}}, 'axis_order': 'xyz',
              'normalisation': {...}, 'training': {...}},
     'text_encoder': state_dict, 'synthesis': state_dict}

Published layouts: synthesis ``{'model_G': {'name': 'lccd', 'args': ..., 'sd_G': state_dict}}``;
stage 1 ``{'model_state_dict': state_dict (text tower + visual.*), ...}``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumsyn_bids.errors import DataError
from tumsyn_bids.models.locations import sha256_file  # noqa: F401  (re-exported)

NATIVE_FORMAT = "tumsyn-native"
NATIVE_VERSION = 1
_MAX_LISTED = 6


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (memory-mapped when possible); errors are DataErrors."""
    path = Path(path)
    if not path.is_file():
        raise DataError("weights file not found", path=path)
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):  # legacy (non-zip) files cannot be memory-mapped
                raise
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch < 2.6: "Unsupported global: GLOBAL os.system"; torch 2.6-2.13: "Weights only load failed ...
        # Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc), re.IGNORECASE)
        if found:
            raise DataError(
                f"refused to load: the file needs code to run ({found.group(1)}); "
                "only plain weights files are accepted",
                path=path,
            ) from None
        raise DataError("cannot read checkpoint (truncated or corrupt?): not a torch weights file", path=path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read checkpoint (truncated or corrupt?): {first[:160]}", path=path) from None


def describe_key_mismatch(model: nn.Module, state: Mapping[str, Any]) -> str | None:
    """One line listing missing, unexpected and wrongly shaped keys, or None when all match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)}!={tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            parts.append(f"{label} [{len(items)}]: {', '.join(items[:_MAX_LISTED])}{more}")
    return "; ".join(parts) or None


def load_state_strict(model: nn.Module, state: Mapping[str, Any], what: str = "model",
                      path: str | Path | None = None) -> None:
    """``load_state_dict(strict=True)`` with a one-line DataError naming what does not match."""
    problem = describe_key_mismatch(model, state)
    if problem:
        raise DataError(f"wrong architecture for {what}: {problem}", path=path)
    model.load_state_dict(state, strict=True)


def atomic_torch_save(obj: Any, path: str | Path) -> str:
    """Save to a temporary file in the target directory, then rename; returns the sha256."""
    from tumsyn_bids.atomic import atomic_write

    path = atomic_write(path, lambda tmp: torch.save(obj, tmp))
    return sha256_file(path)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def native_checkpoint(spec: dict[str, Any], text_encoder: nn.Module, synthesis: nn.Module) -> dict[str, Any]:
    """The native checkpoint dict for a spec and two modules."""
    return {
        "format": NATIVE_FORMAT,
        "version": NATIVE_VERSION,
        "spec": spec,
        "text_encoder": _cpu_state(text_encoder),
        "synthesis": _cpu_state(synthesis),
    }


def save_native(path: str | Path, spec: dict[str, Any], text_encoder: nn.Module, synthesis: nn.Module) -> str:
    """Write a native checkpoint atomically; returns its sha256."""
    return atomic_torch_save(native_checkpoint(spec, text_encoder, synthesis), path)


def save_official_layout(path: str | Path, net: nn.Module, args: Mapping[str, Any] | None = None) -> str:
    """Write a synthesis network in the published layout ``{'model_G': {...}}``; returns the sha256."""
    obj = {"model_G": {"name": "lccd", "args": dict(args or {}), "sd_G": _cpu_state(net)}}
    return atomic_torch_save(obj, path)


def checkpoint_kind(obj: Any) -> str:
    """'native', 'official-synthesis', 'official-stage1' or 'unknown'."""
    if isinstance(obj, dict):
        if obj.get("format") == NATIVE_FORMAT:
            return "native"
        if isinstance(obj.get("model_G"), dict) and "sd_G" in obj["model_G"]:
            return "official-synthesis"
        if isinstance(obj.get("model_state_dict"), dict):
            return "official-stage1"
    return "unknown"
