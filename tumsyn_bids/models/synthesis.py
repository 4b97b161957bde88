"""The synthesis network (registry name ``lccd``): encoder + text fusion + coordinate decoder.

``encode(x, text_feat)`` runs once per window; ``decode(feat, coords)`` evaluates any number of
query points (cell centres of the output grid in [-1, 1]^3, array-axis order of ``x``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tumsyn_bids.models.configs import SynthesisConfig
from tumsyn_bids.models.decoder import MLP, decoder_inputs
from tumsyn_bids.models.encoder import EDSR3D
from tumsyn_bids.models.fusion import TextImageFusion
from tumsyn_bids.models.registry import register


@register("lccd")
class SynthesisNet(nn.Module):
    """Text-conditioned any-resolution synthesis network."""

    def __init__(
        self,
        in_channels: int = 1,
        enc_width: int = 256,
        n_resblocks: int = 24,
        res_scale: float = 0.1,
        feat_dim: int = 768,
        text_dim: int = 768,
        heads: int = 8,
        ffn_expansion: float = 2.0,
        decoder_hidden: Sequence[int] = (3072, 3072, 768, 256),
        out_channels: int = 1,
        fusion_blocks: int = 1,
    ):
        super().__init__()
        self.config = SynthesisConfig(
            in_channels, enc_width, n_resblocks, res_scale, feat_dim, text_dim, heads, ffn_expansion,
            tuple(int(h) for h in decoder_hidden), out_channels, fusion_blocks,
        )
        self.encoder = EDSR3D(in_channels, enc_width, n_resblocks, feat_dim, res_scale)
        self.fusion = TextImageFusion(feat_dim, text_dim, heads, ffn_expansion, fusion_blocks)
        self.imnet = MLP(feat_dim + 3, out_channels, list(decoder_hidden))
        # Channels-last 3D convolutions are several times faster on CPUs (oneDNN) and on GPU
        # tensor cores; the memory format changes no result and no state-dict key.
        self.to(memory_format=torch.channels_last_3d)

    @classmethod
    def from_config(cls, cfg: SynthesisConfig) -> SynthesisNet:
        return cls(**cfg.to_dict())

    def encode(self, x: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) in [0, 1] and (B, text_dim) -> fused features (B, feat_dim, D, H, W)."""
        x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.fusion(self.encoder(x), text_feat)

    def decode(self, feat: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Features (B, C, D, H, W) and coords (B, Q, 3) in [-1, 1] -> (B, Q, out_channels)."""
        return self.imnet(decoder_inputs(feat, coords))

    def forward(self, x: torch.Tensor, text_feat: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x, text_feat), coords)
