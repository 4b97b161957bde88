"""Checks on the model before a run writes anything: identity, weights digest, tissue-map support.

Called by the runner (and by the CLI for ``--save-maps``) before any output is written. torch is
imported only where the weights are loaded; the weights digest and a model family's name need no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tumsyn_bids.config import Settings


def _weights_arg(settings: "Settings") -> str | None:
    return str(settings.weights) if settings.weights else None


def model_identity(settings: "Settings") -> tuple[str, str]:
    """(model name, weights sha256), loading the weights once on CPU (checks them early)."""
    from tumsyn_bids.models.loading import load_model

    bundle = load_model(settings.model, _weights_arg(settings), device="cpu")
    return bundle.name, bundle.sha256


def quick_weights_sha256(settings: "Settings") -> str | None:
    """sha256 of the weights file that load_model would use, when it is one file (else None).

    Uses the loader's own search order (:mod:`tumsyn_bids.models.locations`, no torch import).
    """
    from tumsyn_bids.models.locations import sha256_file, weights_candidates

    location = weights_candidates(settings.model, settings.weights)[0][1]
    path = Path(location)
    if os.pathsep in location or not path.is_file():
        return None
    return sha256_file(path)


def check_save_maps(settings: "Settings") -> None:
    """``--save-maps`` needs a model that predicts tissue maps: UsageError (exit 64) before anything is written.

    A model family without maps (``tumsyn-official``, ``lccd-small``) is refused from its name alone
    (no torch); otherwise the weights are loaded on CPU and asked (``--weights`` may hold any checkpoint).
    """
    from tumsyn_bids.errors import UsageError
    from tumsyn_bids.models.configs import PhysicsModelConfig, get_config

    if not settings.save_maps:
        return
    message = ("--save-maps: model {} does not predict tissue maps "
               "(only physics-structured models such as tumsyn-small do)")
    if not isinstance(get_config(settings.model), PhysicsModelConfig):
        raise UsageError(message.format(settings.model))
    from tumsyn_bids.anat.synthesis import predicts_tissue_maps
    from tumsyn_bids.models.loading import load_model

    bundle = load_model(settings.model, _weights_arg(settings), device="cpu")
    if not predicts_tissue_maps(bundle):
        raise UsageError(message.format(f"{bundle.name} ({bundle.path})"))
