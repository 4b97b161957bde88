"""Architecture sizes of the model families (plain dataclasses, no torch).

``tumsyn-official`` is the published network (reference: 113,595,137 synthesis parameters and a
CLIP text tower of width 512, 8 blocks, 768-d output). ``lccd-small`` is the same code with
smaller numbers (for the two-stage TUMSyn training recipe on paired BIDS data). ``tumsyn-small``,
the model that ships in the package, is the physics-structured network
(:mod:`tumsyn_bids.models.physics_net`): a 3D U-Net and an implicit decoder of tissue parameters
rendered with the signal equations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tumsyn_bids.errors import UsageError


@dataclass(frozen=True)
class TextConfig:
    """CLIP text tower sizes."""

    vocab_size: int = 49408
    context_length: int = 90
    width: int = 512
    layers: int = 8
    heads: int = 8
    embed_dim: int = 768  # output (projection) size; = synthesis text_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SynthesisConfig:
    """Sizes of the ``lccd`` synthesis network (encoder, fusion block, decoder MLP)."""

    in_channels: int = 1
    enc_width: int = 256  # EDSR feature width
    n_resblocks: int = 24
    res_scale: float = 0.1
    feat_dim: int = 768  # encoder output = fusion dim = decoder input (without coords)
    text_dim: int = 768  # size of the text feature fed to text_lora
    heads: int = 8
    ffn_expansion: float = 2.0  # gated FFN hidden = feat_dim * ffn_expansion
    decoder_hidden: tuple[int, ...] = (3072, 3072, 768, 256)
    out_channels: int = 1
    fusion_blocks: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["decoder_hidden"] = list(self.decoder_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthesisConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "decoder_hidden" in known:
            known["decoder_hidden"] = tuple(int(v) for v in known["decoder_hidden"])
        return cls(**known)


@dataclass(frozen=True)
class ModelConfig:
    """A named pair of text tower and synthesis network sizes."""

    name: str
    text: TextConfig = field(default_factory=TextConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    axis_order: str = "xyz"
    window: int = 60  # input window edge (voxels) the model is meant to run on


OFFICIAL = ModelConfig(name="tumsyn-official", axis_order="zyx", window=60)

LCCD_SMALL = ModelConfig(
    name="lccd-small",
    text=TextConfig(width=128, layers=2, heads=4, embed_dim=32),
    synthesis=SynthesisConfig(
        enc_width=24,
        n_resblocks=3,
        feat_dim=32,
        text_dim=32,
        heads=4,
        ffn_expansion=2.0,
        decoder_hidden=(64, 64, 32),
    ),
    axis_order="xyz",
    window=64,
)



@dataclass(frozen=True)
class PhysicsModelConfig:
    """A physics-structured model: ``physics-unet`` sizes and its inference window."""

    name: str
    synthesis_args: dict[str, Any] = field(default_factory=dict)
    window: int = 64
    axis_order: str = "xyz"


SMALL = PhysicsModelConfig(
    name="tumsyn-small",
    synthesis_args={"in_channels": 1, "widths": [8, 24, 48, 96], "feat_dim": 32, "head_hidden": [64, 64]},
    window=64,
)

CONFIGS: dict[str, ModelConfig | PhysicsModelConfig] = {c.name: c for c in (OFFICIAL, LCCD_SMALL, SMALL)}


def get_config(name: str) -> ModelConfig | PhysicsModelConfig:
    """The named configuration, or a UsageError listing the known names."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(sorted(CONFIGS))}") from None
