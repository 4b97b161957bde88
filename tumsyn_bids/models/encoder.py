"""EDSR-like 3D CNN image encoder (no downsampling, BatchNorm residual blocks).

State-dict layout: ``head.0``; ``body.{0..n-1}.body.{0,1,3,4}`` (Conv3d, BatchNorm3d, ReLU,
Conv3d, BatchNorm3d); ``body.n`` a last Conv3d; ``tail.0`` Conv3d to the fusion width.
BatchNorm makes ``eval()`` mandatory at inference.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=3, padding=1, bias=bias)


class ResBlock(nn.Module):
    """x + res_scale * (conv, BN, ReLU, conv, BN)(x)."""

    def __init__(self, width: int, res_scale: float = 0.1):
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(
            conv3(width, width), nn.BatchNorm3d(width), nn.ReLU(inplace=True),
            conv3(width, width), nn.BatchNorm3d(width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR3D(nn.Module):
    """head conv, residual body with a global skip, tail conv (no activation)."""

    def __init__(self, in_channels: int = 1, width: int = 256, n_resblocks: int = 24, out_dim: int = 768,
                 res_scale: float = 0.1):
        super().__init__()
        self.head = nn.Sequential(conv3(in_channels, width))
        self.body = nn.Sequential(*[ResBlock(width, res_scale) for _ in range(n_resblocks)], conv3(width, width))
        self.tail = nn.Sequential(conv3(width, out_dim))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        x = x + self.body(x)
        return self.tail(x)
