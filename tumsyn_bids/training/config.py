"""Training settings: frozen-free dataclasses filled from a YAML/TOML file and CLI overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tumsyn_bids.errors import UsageError

ALL_CONTRASTS: tuple[str, ...] = ("T1w", "T2w", "FLAIR", "PDw", "T2starw", "SWI", "T1CE")
DEFAULT_HELD_OUT: tuple[str, ...] = ("synthseg_training_seg_15", "synthseg_training_seg_16", "synthsr_brain5")


@dataclass
class Stage1Config:
    """Contrastive text-image pre-training (symmetric InfoNCE)."""

    steps: int = 200
    batch_size: int = 28
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_frac: float = 0.2
    image_size: int = 32  # cube edge fed to the image tower
    downscale: int = 4  # 1 mm pool volumes are average-pooled by this factor first


@dataclass
class Stage2Config:
    """Synthesis training with the frozen text encoder (published recipe, CPU-sized)."""

    steps: int = 1000
    batch_size: int = 4
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_frac: float = 0.02
    lr_size: int = 16  # edge of the LR input cube (published: 20)
    queries: int = 3000  # query points per cube (published: 8000)
    scale_min: float = 1.0
    scale_max: float = 3.0
    thick_slice_prob: float = 0.25  # chance that a batch uses one thick-slice axis instead
    thick_max: float = 5.0
    both_directions: bool = True
    augment_orientation: bool = True  # random axis permutation/flips of each pair (same for both)


@dataclass
class DataConfig:
    """Where training subjects come from."""

    source: str = "simulated"  # "simulated" or "bids"
    labelmaps: list[str] = field(default_factory=list)  # label-map files or folders
    mni_phantom: bool = True  # add the nilearn MNI tissue-map phantom
    held_out: list[str] = field(default_factory=lambda: list(DEFAULT_HELD_OUT))
    contrasts: list[str] = field(default_factory=lambda: list(ALL_CONTRASTS))
    contrasts_per_subject: int = 4  # contrasts simulated per training subject (T1w always)
    pool_subjects: int = 4  # subjects held in memory at once
    refresh_every: int = 150  # steps between replacing one pool subject
    crop_margin: int = 4
    bids_dir: str | None = None
    participant_label: list[str] = field(default_factory=list)
    brain_mask: str = "nonzero"  # only "nonzero" so far: BIDS inputs must already be skull-stripped


@dataclass
class TrainConfig:
    """Everything one training run needs; saved in checkpoints and the training record."""

    model: str = "lccd-small"  # the two-stage TUMSyn recipe trains the published architecture
    seed: int = 0
    amp: bool = True  # bf16 autocast (CPU) / fp16 (CUDA)
    device: str = "cpu"
    threads: int | None = None
    checkpoint_every: int = 25
    log_every: int = 1
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"stage1": Stage1Config, "stage2": Stage2Config, "data": DataConfig}


def from_dict(values: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig`; unknown keys are a usage error naming the source."""
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in top:
            raise UsageError(f"unknown training setting {key!r}", path=source)
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise UsageError(f"section {key!r} must be a table", path=source)
            cls = _SECTIONS[key]
            known = {f.name for f in dataclasses.fields(cls)}
            for sub in value:
                if sub not in known:
                    raise UsageError(f"unknown setting {key}.{sub}", path=source)
            kwargs[key] = cls(**value)
        else:
            kwargs[key] = value
    return TrainConfig(**kwargs)


def load_config(path: Path | str | None) -> TrainConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) training config; defaults when ``path`` is None."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    if not path.is_file():
        raise UsageError("training config not found", path=path)
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            values = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            raise UsageError("training config must end in .toml, .yaml or .yml", path=path)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot parse training config ({exc.__class__.__name__})", path=path) from exc
    if not isinstance(values, dict):
        raise UsageError("training config must be a mapping", path=path)
    return from_dict(values, source=str(path))


def override(config: TrainConfig, section: str | None, **changes: Any) -> TrainConfig:
    """A copy with ``changes`` applied (to ``config.<section>`` when given); None values skipped."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    if section is None:
        return dataclasses.replace(config, **changes)
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})
