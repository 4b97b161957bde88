"""CLIP text tower (stage-1 "BMLIP" text encoder) with the state-dict layout of the published file.

Pre-LayerNorm transformer with causal attention and QuickGELU MLPs; the feature is read at the
end-token position (the largest token id) and projected by ``text_projection``. The output is
NOT L2-normalised (the synthesis network was trained on the raw projection).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tumsyn_bids.errors import DataError
from tumsyn_bids.models.configs import TextConfig
from tumsyn_bids.models.registry import register


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNormFP32(nn.LayerNorm):
    """LayerNorm computed in float32 (as CLIP does), returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class ResidualAttentionBlock(nn.Module):
    """One pre-LN transformer block: x + attn(ln_1 x), then x + mlp(ln_2 x)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = LayerNormFP32(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]
            )
        )
        self.ln_2 = LayerNormFP32(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


@register("clip-text")
class TextEncoder(nn.Module):
    """CLIP text tower: ``forward(tokens (B, L)) -> (B, embed_dim)``."""

    def __init__(
        self,
        vocab_size: int = 49408,
        context_length: int = 90,
        width: int = 512,
        layers: int = 8,
        heads: int = 8,
        embed_dim: int = 768,
    ):
        super().__init__()
        self.config = TextConfig(vocab_size, context_length, width, layers, heads, embed_dim)
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = LayerNormFP32(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # used by stage-1 training only
        self.register_buffer("attn_mask", self._causal_mask(context_length), persistent=False)
        self.reset_parameters()

    @staticmethod
    def _causal_mask(n: int) -> torch.Tensor:
        return torch.full((n, n), float("-inf")).triu_(1)

    @classmethod
    def from_config(cls, cfg: TextConfig) -> TextEncoder:
        return cls(**cfg.to_dict())

    def reset_parameters(self) -> None:
        """CLIP's initialisation (std scaled by width and depth)."""
        if self.positional_embedding.is_meta:
            return
        width, layers = self.config.width, self.config.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = width**-0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise DataError(f"text encoder expects tokens (B, {self.context_length}), got {tuple(tokens.shape)}")
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, self.attn_mask.to(x.dtype))
        x = self.ln_final(x)
        end = tokens.argmax(dim=-1)
        x = x[torch.arange(x.shape[0], device=x.device), end]
        return x @ self.text_projection.to(x.dtype)


TEXT_KEYS_PER_BLOCK = (
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_1.weight",
    "ln_1.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
)


def text_state_from_stage1(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The text-tower entries of a stage-1 ``model_state_dict`` (``visual.*`` and prefixes dropped)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("visual."):
            continue
        out[key] = value
    return out


def infer_text_config(state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> TextConfig:
    """Read the tower sizes from tensor shapes and check they agree with each other."""
    try:
        vocab, width = state["token_embedding.weight"].shape
        context, pos_width = state["positional_embedding"].shape
        proj_in, embed_dim = state["text_projection"].shape
    except KeyError as exc:
        raise DataError(f"{where}: not a CLIP text tower (missing {exc.args[0]!r})") from None
    layers = 0
    while f"transformer.resblocks.{layers}.attn.in_proj_weight" in state:
        layers += 1
    if pos_width != width or proj_in != width or layers == 0:
        raise DataError(
            f"{where}: inconsistent text tower shapes (embedding width {width}, positional {pos_width}, "
            f"projection {proj_in}, {layers} blocks)"
        )
    heads = max(1, width // 64)  # CLIP convention: head width 64
    return TextConfig(int(vocab), int(context), int(width), layers, heads, int(embed_dim))
