"""Simulated training subjects: label-map / MNI phantoms through the physics simulator.

Domain randomisation per subject: phantom (a training label map or the nilearn MNI phantom),
field strength 1.5/3 T, tissue values, deformation, bias, Rician noise, and protocol parameters
jittered around the default protocols (T2w also as 2D spin echo, so TE in the prompt spans
60-140 ms). Images are skull-stripped (intracranial mask, zero background: what the shipped
model expects), normalised like the inference engine (percentile 0.01/99.9) with a randomised
amount of background in the percentile (the user's field of view is unknown), and cropped to the
brain. Label maps listed in ``held_out`` never reach training.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tumsyn_bids.protocols import Protocol, default_protocol
from tumsyn_bids.training.config import DataConfig
from tumsyn_bids.training.pool import PoolImage, PoolSubject, crop_to_mask

log = logging.getLogger(__name__)

MNI = "mni"
SNR_RANGE = (20.0, 80.0)
PHANTOM_MARGIN = 12  # voxels kept around the brain before deformation


def labelmap_files(entries: list[str]) -> list[Path]:
    """Label-map NIfTI files named by ``entries`` (files, or folders searched for *.nii.gz)."""
    files: list[Path] = []
    for entry in entries:
        p = Path(entry)
        if p.is_dir():
            files += sorted(f for f in p.glob("*.nii*") if "label" in f.name or "seg" in f.name)
        elif p.is_file():
            files.append(p)
    return files


def stem(path: Path | str) -> str:
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        name = name.removesuffix(ext)
    return name.removesuffix("_labels")


def is_held_out(path: Path | str, held_out: list[str]) -> bool:
    s = stem(path)
    return any(s == h or s == stem(h) for h in held_out)


@functools.lru_cache(maxsize=32)
def cropped_phantom(source: str):
    """The phantom of ``source`` (a label-map path or ``"mni"``) cropped around its brain."""
    from tumsyn_bids.physics.phantoms import load_labelmap_phantom, mni_phantom

    phantom = mni_phantom(1.0) if source == MNI else load_labelmap_phantom(source)
    where = np.argwhere(phantom.brain_mask)
    lo = np.maximum(where.min(0) - PHANTOM_MARGIN, 0)
    hi = np.minimum(where.max(0) + PHANTOM_MARGIN + 1, phantom.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    affine = phantom.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ lo.astype(float)
    changes: dict[str, Any] = {"brain_mask": np.ascontiguousarray(phantom.brain_mask[sl]), "affine": affine}
    if phantom.labels is not None:
        changes["labels"] = np.ascontiguousarray(phantom.labels[sl])
    else:
        changes["probs"] = np.ascontiguousarray(phantom.probs[(slice(None), *sl)])
    return dataclasses.replace(phantom, **changes)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.round(rng.uniform(lo, hi), 1))


def jitter_protocol(contrast: str, field_strength: float, rng: np.random.Generator) -> Protocol:
    """A plausible protocol for ``contrast`` around the default one (validated by the simulator)."""
    base = default_protocol(contrast, field_strength)
    r = dataclasses.replace
    if base.sequence == "mprage":
        tr = _u(rng, 0.85, 1.15) * base.tr_ms
        return r(base, tr_ms=round(tr, 1), te_ms=_u(rng, 0.8 * base.te_ms, 1.3 * base.te_ms),
                 ti_ms=round(min(base.ti_ms * rng.uniform(0.8, 1.2), 0.5 * tr), 1),
                 flip_angle=float(np.clip(base.flip_angle + rng.integers(-2, 3), 5, 15)))
    if contrast == "T2w":
        if rng.random() < 0.5:  # 2D turbo spin echo
            return r(base, sequence="se", tr_ms=_u(rng, 2500, 6500), te_ms=_u(rng, 60, 140), ti_ms=None,
                     flip_angle=90.0)
        return r(base, sequence="space", tr_ms=_u(rng, 2800, 3500), te_ms=_u(rng, 380, 600), ti_ms=None,
                 flip_angle="T2var")
    if base.sequence == "ir":
        tr = _u(rng, 7000, 11000)
        return r(base, tr_ms=tr, te_ms=_u(rng, 80, 140), ti_ms=round(base.ti_ms * rng.uniform(0.9, 1.1), 1))
    if contrast == "PDw":
        return r(base, tr_ms=_u(rng, 2000, 6000), te_ms=_u(rng, 6, 20))
    if contrast == "T2starw":
        return r(base, tr_ms=_u(rng, 400, 900), te_ms=_u(rng, 12, 30), flip_angle=float(rng.integers(15, 31)))
    if contrast == "SWI":
        return r(base, tr_ms=_u(rng, 25, 50), te_ms=_u(rng, 15, 24), flip_angle=float(rng.integers(10, 21)))
    return base


def normalize_random_background(data: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Percentile 0.01/99.9 normalisation as if the masked image sat in a field of view with a random
    amount of zero background (none drawn: the image's own grid)."""
    values = data[mask]
    if rng is None:
        from tumsyn_bids.inference.normalize import normalize_intensity

        return normalize_intensity(data)
    ratio = rng.uniform(1.5, 8.0)  # field-of-view voxels per brain voxel
    hi = float(np.percentile(values, max(100.0 - 0.1 * ratio, 95.0)))
    if hi <= 0:
        return np.zeros_like(data)
    return (np.clip(data, 0.0, hi) / hi).astype(np.float32)


class SimulatedSubjects:
    """Factory of simulated :class:`PoolSubject`s from the configured phantoms."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        files = labelmap_files(cfg.labelmaps)
        self.training = [str(f) for f in files if not is_held_out(f, cfg.held_out)]
        self.held_out = [str(f) for f in files if is_held_out(f, cfg.held_out)]
        if cfg.mni_phantom:
            self.training.append(MNI)
        if not self.training:
            from tumsyn_bids.errors import UsageError

            raise UsageError("no training phantom: give label maps or enable the MNI phantom")

    def recipe(self) -> dict[str, Any]:
        return {"phantoms": [stem(s) if s != MNI else "nilearn MNI152 2009 phantom" for s in self.training],
                "held_out": [stem(s) for s in self.held_out] or list(self.cfg.held_out),
                "field_strengths": [1.5, 3.0], "contrasts": list(self.cfg.contrasts), "snr": list(SNR_RANGE),
                "bias_strength": [0.05, 0.3], "deformation": "simulator random affine + elastic",
                "skull_stripped": True, "protocols": "jittered around tumsyn_bids.protocols defaults",
                "normalisation": "percentile 0.01/99.9 with random background fraction"}

    def simulate(self, source: str, rng: np.random.Generator, *, jitter: bool = True, deform: bool = True,
                 field_strength: float | None = None, contrasts: list[str] | None = None,
                 noise: bool = True) -> PoolSubject:
        """One subject: every contrast of one drawn head, skull-stripped, normalised, cropped."""
        from tumsyn_bids.physics.simulate import simulate_subject

        phantom = cropped_phantom(source)
        fs = field_strength or float(rng.choice([1.5, 3.0]))
        names = contrasts or list(self.cfg.contrasts)
        protocols = [jitter_protocol(c, fs, rng) if jitter else default_protocol(c, fs) for c in names]
        sims = simulate_subject(phantom, protocols, rng, field_strength=fs, snr=SNR_RANGE, noise=noise,
                                bias_strength=float(rng.uniform(0.05, 0.3)), skull_strip=True, deform=deform)
        mask = next(iter(sims.values())).mask
        arrays = [normalize_random_background(s.data, mask, rng if jitter else None) for s in sims.values()]
        arrays, mask = crop_to_mask(arrays, mask, self.cfg.crop_margin)
        images = [PoolImage(s.contrast, a, s.prompt.text()) for s, a in zip(sims.values(), arrays, strict=True)]
        return PoolSubject(stem(source) if source != MNI else MNI, images, mask, {"field_strength": fs})

    def training_contrasts(self, rng: np.random.Generator) -> list[str]:
        """T1w (when configured) plus up to ``contrasts_per_subject - 1`` others, T2w/FLAIR/PDw favoured."""
        names = list(self.cfg.contrasts)
        k = min(max(self.cfg.contrasts_per_subject, 2), len(names))
        first = ["T1w"] if "T1w" in names else []
        rest = [c for c in names if c not in first]
        weights = np.array([2.0 if c in ("T2w", "FLAIR", "PDw") else 1.0 for c in rest])
        picked = rng.choice(len(rest), size=k - len(first), replace=False, p=weights / weights.sum())
        return first + [rest[int(i)] for i in sorted(picked)]

    def make_training_subject(self, rng: np.random.Generator) -> PoolSubject:
        source = self.training[int(rng.integers(len(self.training)))]
        return self.simulate(source, rng, contrasts=self.training_contrasts(rng))

    def held_out_subjects(self, rng_seed: int = 1, n: int = 2) -> list[PoolSubject]:
        """Default-protocol subjects from the held-out maps (or fresh training-phantom draws if none)."""
        rng = np.random.default_rng(rng_seed)
        sources = self.held_out[:n] or self.training[:1]
        return [self.simulate(s, rng, jitter=False, field_strength=fs)
                for s in sources for fs in (1.5, 3.0)]
