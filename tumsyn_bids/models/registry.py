"""Model registry in the LIIF style: ``@register(name)`` on a class, ``make(spec)`` to build one.

A spec is ``{'name': str, 'args': dict, 'sd': state_dict}``; the published checkpoint names the
state dict ``sd_G``, which is accepted too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tumsyn_bids.errors import DataError, UsageError

_MODELS: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator registering a model constructor under ``name``."""

    def decorator(cls: Callable[..., Any]) -> Callable[..., Any]:
        if name in _MODELS and _MODELS[name] is not cls:
            raise UsageError(f"model name {name!r} is already registered")
        _MODELS[name] = cls
        return cls

    return decorator


def registered() -> list[str]:
    """Names of the registered architectures."""
    _import_builtins()
    return sorted(_MODELS)


def _import_builtins() -> None:
    # Importing the modules runs their @register decorators.
    from tumsyn_bids.models import physics_net, synthesis, text_encoder  # noqa: F401


def make(spec: dict[str, Any], args: dict[str, Any] | None = None, load_sd: bool = False):
    """Build the model a spec names; with ``load_sd`` load its state dict strictly."""
    _import_builtins()
    name = spec.get("name")
    if name not in _MODELS:
        raise DataError(f"unknown architecture {name!r}; known: {', '.join(sorted(_MODELS))}")
    model_args = dict(spec.get("args") or {})
    if args:
        model_args.update(args)
    model = _MODELS[name](**model_args)
    if load_sd:
        sd = spec.get("sd", spec.get("sd_G"))
        if sd is None:
            raise DataError(f"spec for {name!r} has no state dict ('sd' or 'sd_G')")
        from tumsyn_bids.models.checkpoint import load_state_strict

        load_state_strict(model, sd, what=name)
    return model
