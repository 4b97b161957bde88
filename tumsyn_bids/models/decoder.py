"""Coordinate MLP decoder (``imnet``): trilinear feature sample + raw coordinates -> intensity.

For each query (a cell centre of the output grid in [-1, 1]^3, in the array-axis order of the
feature map), the feature map is sampled with ``grid_sample`` (trilinear, ``align_corners=False``,
zero padding; grid_sample wants (x, y, z) = reversed array order), the three raw coordinates are
appended and an MLP with ReLU between layers gives one value. No local ensemble, no cell size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Linear layers with ReLU between them; keys ``layers.{0,2,4,...}``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]):
        super().__init__()
        dims = [in_dim, *hidden]
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=False):
            mods += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        mods.append(nn.Linear(dims[-1], out_dim))
        self.layers = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def sample_features(feat: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of ``feat (B,C,D,H,W)`` at ``coords (B,Q,3)`` (array order) -> (B,Q,C)."""
    grid = coords.flip(-1).to(feat.dtype).view(coords.shape[0], 1, 1, coords.shape[1], 3)
    sampled = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled.view(feat.shape[0], feat.shape[1], coords.shape[1]).transpose(1, 2)


def decoder_inputs(feat: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sampled features with the raw coordinates appended: (B, Q, C + 3)."""
    sampled = sample_features(feat, coords)
    return torch.cat([sampled, coords.to(sampled.dtype)], dim=-1)
