"""Find, verify and load model weights into a :class:`ModelBundle` (text encoder + synthesis net).

Weights are searched in this order: the ``weights`` argument (``--weights PATH``), the
``TUMSYN_WEIGHTS`` environment variable, then the bundled ``tumsyn_bids/data/models/<model>.pt``.
A weights location is a native checkpoint file, or for ``tumsyn-official`` the two published
files (synthesis + stage 1), given as a directory holding both or as two paths joined with
``os.pathsep``. Nothing is ever downloaded here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tumsyn_bids.errors import DataError, UsageError
from tumsyn_bids.inference.device import resolve_device
from tumsyn_bids.models.checkpoint import (
    NATIVE_VERSION,
    checkpoint_kind,
    load_state_strict,
    safe_load,
)
from tumsyn_bids.models.configs import ModelConfig, PhysicsModelConfig, get_config
from tumsyn_bids.models.locations import (  # noqa: F401  (re-exported)
    ENV_WEIGHTS,
    WeightsArg,
    as_location,
    bundled_weights_path,
    sha256_file,
    split_location,
    weights_candidates,
)
from tumsyn_bids.models.registry import make
from tumsyn_bids.models.synthesis import SynthesisNet
from tumsyn_bids.models.text_encoder import TextEncoder, infer_text_config, text_state_from_stage1
from tumsyn_bids.models.tokenizer import tokenize

log = logging.getLogger(__name__)

PUBLISHED_NORMALISATION: dict[str, Any] = {
    "method": "percentile",
    "lower_percentile": 0.01,
    "upper_percentile": 99.9,
    "floor_zero": True,
    "range": [0.0, 1.0],
}



@dataclass
class ModelBundle:
    """A ready-to-run model: both networks in eval mode plus what describes them."""

    net: nn.Module  # SynthesisNet (lccd) or PhysicsSynthNet
    text_encoder: nn.Module  # TextEncoder (CLIP) or PromptConditioner
    name: str
    sha256: str
    spec: dict[str, Any]
    axis_order: str = "xyz"
    path: str | None = None
    _prompt_cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> ModelBundle:
        """Move both networks (and cached prompt features) to ``device``."""
        self.net.to(device)
        self.text_encoder.to(device)
        self._prompt_cache = {k: v.to(device) for k, v in self._prompt_cache.items()}
        return self

    def encode_prompt(self, text: Any, source: Any = None) -> torch.Tensor:
        """Text feature (1, text_dim) of a prompt (str or object with ``.text()``), cached per prompt.

        ``source``, the source image's own prompt, is used by physics-structured models (it tells
        them how the input was acquired) and ignored by the text-encoder models."""
        key = text if isinstance(text, str) else text.text()
        physics = callable(getattr(self.text_encoder, "encode_text", None))
        src = None if source is None or not physics else source if isinstance(source, str) else source.text()
        cache_key = key if src is None else f"{key}\n{src}"
        cached = self._prompt_cache.get(cache_key)
        if cached is not None:
            return cached
        if physics:  # parsed prompts -> condition vector
            feat = self.text_encoder.encode_text(key, src).float()
            self._prompt_cache[cache_key] = feat
            return feat
        tokens = tokenize(key, context_length=self.text_encoder.context_length).to(self.device)
        with torch.inference_mode():
            feat = self.text_encoder(tokens).float()
        self._prompt_cache[key] = feat
        return feat

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())


def load_model(model: str = "tumsyn-small", weights: WeightsArg = None,
               device: str | torch.device = "cpu") -> ModelBundle:
    """Load ``model`` from the first weights location in the search order (see module docstring)."""
    cfg = get_config(model)
    source, location = weights_candidates(model, weights, bundled=bundled_weights_path(model))[0]
    paths = split_location(location)
    if source == "bundled" and not paths[0].is_file():
        raise DataError(
            f"no bundled weights for {model!r}; pass --weights PATH or set {ENV_WEIGHTS}", path=paths[0]
        )
    if len(paths) == 1 and paths[0].is_dir():
        paths = sorted(p for p in paths[0].iterdir() if p.suffix in (".pt", ".pth") and p.is_file())
        if not paths:
            raise DataError("no .pt/.pth weights files in this folder", path=location)
    bundle = load_weights_files(paths, cfg)
    bundle.to(resolve_device(device))
    log.info("model %s: weights %s (from %s), sha256 %s", bundle.name, bundle.path, source, bundle.sha256)
    return bundle


def load_weights_files(paths: Sequence[Path], cfg: ModelConfig | None = None) -> ModelBundle:
    """A bundle from one native file, or from the published synthesis + stage-1 pair."""
    if len(paths) == 1:
        path = paths[0]
        obj = safe_load(path)
        kind = checkpoint_kind(obj)
        if kind != "native":
            what = {"official-synthesis": "a published synthesis file: give its stage-1 file too",
                    "official-stage1": "a published stage-1 file: give its synthesis file too",
                    }.get(kind, "not a tumsyn checkpoint")
            raise DataError(what, path=path)
        try:
            return bundle_from_native(obj, path=path, sha256=sha256_file(path))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise DataError(f"not a usable tumsyn checkpoint ({type(exc).__name__}: {exc})", path=path) from None
    if len(paths) == 2:
        try:
            return load_official_pair(*paths)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise DataError(f"not a usable published weights pair ({type(exc).__name__}: {exc})",
                            path=as_location(paths)) from None
    raise DataError(f"expected 1 native checkpoint or 2 published files, got {len(paths)}", path=as_location(paths))


def bundle_from_native(obj: dict[str, Any], path: str | Path | None = None, sha256: str = "") -> ModelBundle:
    """Build the bundle a native checkpoint dict describes and load its weights strictly."""
    if int(obj.get("version", 0)) > NATIVE_VERSION:
        raise DataError(f"checkpoint version {obj.get('version')} is newer than this software ({NATIVE_VERSION})",
                        path=path)
    spec = obj.get("spec") or {}
    try:
        text_spec, synth_spec = spec["text_encoder"], spec["synthesis"]
    except KeyError as exc:
        raise DataError(f"checkpoint spec lacks {exc.args[0]!r}", path=path) from None
    text = make(text_spec)
    net = make(synth_spec)
    load_state_strict(text, obj["text_encoder"], what=f"text encoder {text_spec.get('name')!r}", path=path)
    load_state_strict(net, obj["synthesis"], what=f"synthesis network {synth_spec.get('name')!r}", path=path)
    return ModelBundle(
        net=net.eval(),
        text_encoder=text.eval(),
        name=str(spec.get("model", "unnamed")),
        sha256=sha256,
        spec=spec,
        axis_order=str(spec.get("axis_order", "xyz")),
        path=str(path) if path else None,
    )


def load_official_pair(first: Path, second: Path) -> ModelBundle:
    """The published synthesis checkpoint and stage-1 checkpoint (either order) as one bundle."""
    objs = {p: safe_load(p) for p in (first, second)}
    kinds = {checkpoint_kind(o): p for p, o in objs.items()}
    if set(kinds) != {"official-synthesis", "official-stage1"}:
        raise DataError("expected one published synthesis file (model_G) and one stage-1 file (model_state_dict)",
                        path=f"{first}{os.pathsep}{second}")
    synth_path, stage1_path = kinds["official-synthesis"], kinds["official-stage1"]
    model_g = objs[synth_path]["model_G"]
    sd = {k.removeprefix("module."): v for k, v in model_g["sd_G"].items()}
    synth_cfg = infer_synthesis_args(sd, where=str(synth_path))
    net = SynthesisNet(**synth_cfg)
    load_state_strict(net, sd, what="synthesis network 'lccd'", path=synth_path)

    text_sd = text_state_from_stage1(objs[stage1_path]["model_state_dict"])
    text_cfg = infer_text_config(text_sd, where=str(stage1_path))
    if text_cfg.embed_dim != synth_cfg["text_dim"]:
        raise DataError(f"text feature size {text_cfg.embed_dim} does not match the synthesis network's "
                        f"{synth_cfg['text_dim']}", path=stage1_path)
    text = TextEncoder.from_config(text_cfg)
    load_state_strict(text, text_sd, what="text encoder 'clip-text'", path=stage1_path)
    spec = {
        "model": "tumsyn-official",
        "text_encoder": {"name": "clip-text", "args": text_cfg.to_dict()},
        "synthesis": {"name": "lccd", "args": synth_cfg},
        "axis_order": "zyx",
        "inference": {"window": 60},
        "normalisation": dict(PUBLISHED_NORMALISATION),
        "training": {"source": "published TUMSyn weights (Zenodo record 13119176)"},
        "files": {"synthesis": str(synth_path), "stage1": str(stage1_path)},
    }
    digest = f"{sha256_file(synth_path)}+{sha256_file(stage1_path)}"
    return ModelBundle(net=net.eval(), text_encoder=text.eval(), name="tumsyn-official", sha256=digest,
                       spec=spec, axis_order="zyx", path=f"{synth_path}{os.pathsep}{stage1_path}")


def infer_synthesis_args(sd: dict[str, torch.Tensor], where: str = "checkpoint") -> dict[str, Any]:
    """Synthesis network sizes read from state-dict shapes (heads: 96-wide as published)."""
    try:
        enc_width, in_ch = sd["encoder.head.0.weight"].shape[:2]
        feat_dim = sd["encoder.tail.0.weight"].shape[0]
        text_dim = sd["fusion.block.0.text_lora.layers.0.weight"].shape[1]
        ffn_hidden2 = sd["fusion.block.0.mlp.project_in.weight"].shape[0]
    except KeyError as exc:
        raise DataError(f"not a TUMSyn synthesis state dict (missing {exc.args[0]!r})", path=where) from None
    n_res = 0
    while f"encoder.body.{n_res}.body.0.weight" in sd:
        n_res += 1
    n_fusion = 0
    while f"fusion.block.{n_fusion}.c_attn.q.weight" in sd:
        n_fusion += 1
    layers = sorted(int(k.split(".")[2]) for k in sd if k.startswith("imnet.layers.") and k.endswith(".weight"))
    dims = [sd[f"imnet.layers.{i}.weight"].shape for i in layers]
    return {
        "in_channels": int(in_ch),
        "enc_width": int(enc_width),
        "n_resblocks": n_res,
        "res_scale": 0.1,
        "feat_dim": int(feat_dim),
        "text_dim": int(text_dim),
        "heads": max(1, int(feat_dim) // 96),
        "ffn_expansion": ffn_hidden2 / 2 / feat_dim,
        "decoder_hidden": [int(s[0]) for s in dims[:-1]],
        "out_channels": int(dims[-1][0]) if dims else 1,
        "fusion_blocks": n_fusion,
    }


def convert_official(weights: WeightsArg, out: str | Path) -> str:
    """Write the published pair (folder or PATH1:PATH2) as one native ``tumsyn-official`` file; returns its sha256.

    The native file holds only the text tower of the stage-1 checkpoint, so it is ~7x smaller and
    loads without reading the image tower.
    """
    from tumsyn_bids.models.checkpoint import save_native

    paths = split_location(as_location(weights))
    if len(paths) == 1 and paths[0].is_dir():
        paths = sorted(p for p in paths[0].iterdir() if p.suffix in (".pt", ".pth") and p.is_file())
    if len(paths) != 2:
        raise DataError("expected the two published files (a folder holding them or PATH1:PATH2)",
                        path=as_location(weights))
    bundle = load_official_pair(*paths)
    spec = dict(bundle.spec)
    spec["training"] = dict(spec["training"], converted_from_sha256=bundle.sha256)
    return save_native(out, spec, bundle.text_encoder, bundle.net)


def physics_spec(model: str, synthesis_args: dict[str, Any], window: int = 64) -> dict[str, Any]:
    """Checkpoint spec of a physics-structured model (``physics-unet`` + ``prompt-physics``)."""
    return {
        "model": model,
        "text_encoder": {"name": "prompt-physics", "args": {}},
        "synthesis": {"name": "physics-unet", "args": dict(synthesis_args)},
        "axis_order": "xyz",
        "inference": {"window": window},
        "input": "skull-stripped",
        "outputs": "tissue maps (PD, T1, T2, T2*, GdR1, susceptibility) rendered with the signal equations",
        "normalisation": dict(PUBLISHED_NORMALISATION),
        "training": {},
    }


def build_networks(config: str | ModelConfig | PhysicsModelConfig = "tumsyn-small"
                   ) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Randomly initialised networks (prompt encoder, synthesis net) of a named configuration and their spec."""
    cfg = get_config(config) if isinstance(config, str) else config
    if isinstance(cfg, PhysicsModelConfig):
        spec = physics_spec(cfg.name, cfg.synthesis_args, cfg.window)
        return make(spec["text_encoder"]), make(spec["synthesis"]), spec
    spec = {
        "model": cfg.name,
        "text_encoder": {"name": "clip-text", "args": cfg.text.to_dict()},
        "synthesis": {"name": "lccd", "args": cfg.synthesis.to_dict()},
        "axis_order": cfg.axis_order,
        "inference": {"window": cfg.window},
        "normalisation": dict(PUBLISHED_NORMALISATION),
        "training": {},
    }
    if cfg.text.embed_dim != cfg.synthesis.text_dim:
        raise UsageError(f"configuration {cfg.name!r}: text embed_dim != synthesis text_dim")
    return make(spec["text_encoder"]), make(spec["synthesis"]), spec


def make_random_bundle(
    config: str | ModelConfig | PhysicsModelConfig = "tumsyn-small", seed: int = 0, device: str | torch.device = "cpu"
) -> ModelBundle:
    """A random-weight bundle (eval mode) for wiring tests; sha256 is a fixed 'random-<seed>' tag."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text, net, spec = build_networks(config)
    spec["training"] = {"random_seed": seed}
    bundle = ModelBundle(net=net.eval(), text_encoder=text.eval(), name=spec["model"], sha256=f"random-{seed}",
                         spec=spec, axis_order=spec["axis_order"], path=None)
    return bundle.to(resolve_device(device))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
