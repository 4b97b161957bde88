"""Run the patch engine on a conformed, brain-masked source file (torch imported lazily)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

LOGGER = logging.getLogger("tumsyn.synthesis")

_BUNDLES: dict[tuple[str, str, str], object] = {}  # per-process cache: (model, weights, device)


@dataclass(frozen=True)
class SynthesisInfo:
    out_file: str
    device: str
    seconds: float
    windows: int
    model_name: str
    sha256: str
    voxel_size: tuple[float, float, float]
    maps: dict[str, str] = field(default_factory=dict)  # tissue map name -> file (same grid as out_file)
    refinement: dict = field(default_factory=dict)  # what inference.refine did (empty: not run)


def get_bundle(model: str, weights: str | None, device: str):
    """The model bundle, loaded once per worker process."""
    from tumsyn_bids.models.loading import load_model

    key = (model, weights or "", device)
    if key not in _BUNDLES:
        _BUNDLES[key] = load_model(model, weights or None, device=device)
    return _BUNDLES[key]


def predicts_tissue_maps(bundle) -> bool:
    """Whether the model predicts tissue-parameter maps (physics-structured: the engine's ``tissue_map=``)."""
    return bool(getattr(getattr(bundle, "net", None), "conditions_decoder", False))


def map_file(out_file: str | Path, tissue_map: str) -> str:
    """Where :func:`synthesize_file` puts tissue map ``tissue_map``: ``<out stem>_<map>.nii.gz`` beside it."""
    out_file = Path(out_file)
    stem = out_file.name.split(".")[0]
    return os.path.abspath(out_file.with_name(f"{stem}_{tissue_map}.nii.gz"))


def _save(data, affine, path: str | Path) -> None:
    out = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    out.header.set_xyzt_units("mm", "sec")
    nib.save(out, str(path))


def describe_device(device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


def synthesize_file(in_file: str | Path, mask_file: str | Path, prompt: str, out_file: str | Path, *,
                    model: str = "tumsyn-small", weights: str | None = None, device: str = "auto",
                    voxel_size: tuple[float, float, float] | None = None, mode: str = "fast",
                    num_threads: int = 1, tissue_maps: Sequence[str] = (),
                    source_prompt: str | None = None, refine: bool = True,
                    extra_sources: Sequence[tuple[str | Path, str | None]] = ()) -> SynthesisInfo:
    """Mask ``in_file`` with ``mask_file``, synthesize ``prompt`` and save float32 to ``out_file``.

    ``tissue_maps`` (names of ``physics_net.MAP_NAMES``, e.g. ``("T1", "PD")``) also saves those maps,
    predicted for the same prompt on the same grid in physical units, to :func:`map_file` paths (one
    more engine run each); a model without tissue maps raises UsageError. ``source_prompt`` (the
    source image's own prompt) tells physics-structured models how the input was acquired.
    ``refine`` (physics-structured models): one engine pass predicts all maps, which
    :mod:`tumsyn_bids.inference.refine` reads against the source before rendering the target; the
    saved maps are then the refined ones, from the same pass. ``extra_sources`` (multi-source
    synthesis): ``(file, source prompt)`` of further sources of the session, already registered to
    ``in_file`` (on any grid: the refinement resamples each once onto the output grid); each with a
    known contrast adds its evidence to the refinement (ignored without refinement).
    """
    import torch

    from tumsyn_bids.inference.device import resolve_device
    from tumsyn_bids.inference.engine import synthesize

    torch.set_num_threads(max(1, int(num_threads)))
    dev = resolve_device(device)
    bundle = get_bundle(model, weights, str(dev))
    if tissue_maps and not predicts_tissue_maps(bundle):
        from tumsyn_bids.errors import UsageError

        raise UsageError(f"model {bundle.name} does not predict tissue maps (--save-maps)")
    img = nib.load(str(in_file))
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask = np.asarray(nib.load(str(mask_file)).dataobj) > 0
    data = np.where(mask, data, 0.0).astype(np.float32)
    device_text = describe_device(dev)
    LOGGER.info("synthesize %s: prompt %r, source prompt %r, device %s, model %s, weights sha256 %s",
                in_file, prompt, source_prompt, device_text, bundle.name, bundle.sha256)
    maps: dict[str, str] = {}
    refinement: dict = {}
    if refine and predicts_tissue_maps(bundle):
        from tumsyn_bids.inference.refine import synthesize_refined

        extra = []
        for path, text in extra_sources:
            other = nib.load(str(path))
            extra.append((np.asarray(other.dataobj, dtype=np.float32), other.affine, text or None))
            LOGGER.info("extra source %s (prompt %r) joins the refinement", path, text)
        result, refined_maps, refinement = synthesize_refined(
            data, img.affine, mask, prompt, bundle, source_prompt=source_prompt or None, extra_sources=extra,
            voxel_size=voxel_size, device=dev, mode=mode, progress=False)
        _save(result.data, result.affine, out_file)
        for name in tissue_maps:
            maps[name] = map_file(out_file, name)
            _save(refined_maps[name], result.affine, maps[name])
            LOGGER.info("tissue map %s of %s (model estimate, refined): %s", name, in_file, maps[name])
        tissue_maps = ()
    else:
        if extra_sources:
            LOGGER.info("%d extra source(s) unused: they inform the refinement, which is off", len(extra_sources))
        result = synthesize(data, img.affine, prompt, bundle, voxel_size=voxel_size, device=dev, mode=mode,
                            progress=False, source_prompt=source_prompt or None)
        _save(result.data, result.affine, out_file)
    for name in tissue_maps:
        predicted = synthesize(data, img.affine, prompt, bundle, voxel_size=voxel_size, device=dev, mode=mode,
                               progress=False, tissue_map=name, source_prompt=source_prompt or None)
        maps[name] = map_file(out_file, name)
        _save(predicted.data, predicted.affine, maps[name])
        LOGGER.info("tissue map %s of %s (model estimate): %s", name, in_file, maps[name])
    return SynthesisInfo(
        out_file=os.path.abspath(out_file), device=device_text, seconds=float(result.seconds),
        windows=int(result.windows), model_name=bundle.name, sha256=bundle.sha256,
        voxel_size=tuple(float(v) for v in result.voxel_size),  # type: ignore[arg-type]
        maps=maps, refinement=refinement,
    )
