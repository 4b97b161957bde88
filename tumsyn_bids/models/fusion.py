"""Text-image fusion block of the published network, quirks included.

Per block (keys ``text_lora``, ``c_attn.{q,kv,proj}``, ``norm2``, ``mlp``, ``norm3``):

1. the text feature passes ``text_lora`` (Linear, ReLU, Linear) and a 1x1x1 conv ``q``;
2. ``kv`` (1x1x1 conv to 2*dim) is reshaped straight from its channel-major memory into
   (B, N=D*H*W, 2, heads, head_dim) tokens (quirk 1: a token is a run of 2*dim consecutive
   values of the (C, D, H, W) buffer, not one voxel's channels);
3. q and k are L2-normalised over the head dim and softmax runs over the N tokens with NO
   scale (quirk 2); the single text query gives a (B, dim) vector, passed through ``proj``;
4. the image features are MULTIPLIED channel-wise by that vector (quirk 3: no residual, no sigmoid);
5. ``x = norm2(x); x = x + mlp(x); x = norm3(x)`` with channel LayerNorms and a gated
   depth-wise conv feed-forward.

The attention runs over every voxel of the window, so results depend on the window size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tumsyn_bids.models.decoder import MLP


class _LayerNormParams(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each voxel of (B, C, D, H, W), with bias (keys ``body.*``)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.body = _LayerNormParams(dim)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 4, 1)
        y = F.layer_norm(y, (y.shape[-1],), self.body.weight.to(y.dtype), self.body.bias.to(y.dtype), self.eps)
        return y.permute(0, 4, 1, 2, 3)


class GatedDWConvFFN(nn.Module):
    """project_in (k1, no bias) -> depth-wise k3 conv -> GELU(a) * b -> project_out (k1, no bias)."""

    def __init__(self, dim: int, expansion: float = 2.0):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv3d(dim, hidden * 2, kernel_size=1, bias=False)
        self.dwconv = nn.Conv3d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv3d(hidden, dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(pointwise_conv(self.project_in, x))
        a, b = h.chunk(2, dim=1)
        return pointwise_conv(self.project_out, F.gelu(a) * b)


def pointwise_conv(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 ``conv`` as a matrix product on the channels-last view (same numbers, channels-last out).

    CPU backends route some 1x1x1 3D convolutions through a slow im2col path; a linear layer over
    the channel axis is the same operation and keeps the result channels-last for the next conv.
    """
    y = F.linear(x.permute(0, 2, 3, 4, 1), conv.weight.flatten(1), conv.bias)
    return y.permute(0, 4, 1, 2, 3)


def text_image_attention(q: torch.Tensor, kv: torch.Tensor, heads: int) -> torch.Tensor:
    """The published attention: one text query over channel-major reshaped voxel tokens.

    ``q`` is (B, C) and ``kv`` is (B, 2C, D, H, W) or (B, 2C, N); returns (B, C). Tokens come from reshaping
    ``kv`` in memory order to (B, N, 2, heads, C/heads); q and k are L2-normalised and the
    softmax over N has no scale factor.
    """
    b, c = q.shape
    n = kv[0, 0].numel()
    head_dim = c // heads
    tokens = kv.reshape(b, n, 2, heads, head_dim)  # quirk 1: a view of the channel-major buffer
    k, v = tokens[:, :, 0].transpose(1, 2), tokens[:, :, 1].transpose(1, 2)  # (B, heads, N, hd)
    qh = F.normalize(q.reshape(b, heads, 1, head_dim), dim=-1)
    # cos(q, k) = (q_hat . k) / max(|k|, eps), exactly F.normalize's definition, without
    # materialising the normalised keys (the norms are cheapest in the token-major layout)
    k_norm = torch.linalg.vector_norm(tokens[:, :, 0], dim=-1).clamp_min(1e-12)  # (B, N, heads)
    logits = (qh @ k.transpose(-2, -1)) / k_norm.transpose(1, 2).unsqueeze(2)
    attn = torch.softmax(logits, dim=-1)  # (B, heads, 1, N): quirk 2, no scale
    return (attn @ v).reshape(b, c)


class TextCrossAttention(nn.Module):
    """Keys ``q``, ``kv``, ``proj`` (1x1x1 convs)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Conv3d(dim, dim, kernel_size=1)
        self.kv = nn.Conv3d(dim, dim * 2, kernel_size=1)
        self.proj = nn.Conv3d(dim, dim, kernel_size=1)

    def kv_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """``kv(x)`` as a contiguous channel-major (B, 2C, N) buffer, whatever the memory format of x.

        Equal to ``self.kv(x).reshape(B, 2C, N)``, computed as one matrix product on the voxel-major
        view so that a channels-last input needs no transposing copy.
        """
        b, c = x.shape[:2]
        n = x.shape[2] * x.shape[3] * x.shape[4]
        voxels = x.permute(0, 2, 3, 4, 1).reshape(b, n, c)  # a view for channels-last input
        weight = self.kv.weight.view(2 * c, c)
        kv = torch.matmul(weight.to(voxels.dtype), voxels.transpose(1, 2))
        return kv + self.kv.bias.to(kv.dtype).view(1, 2 * c, 1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c = text.shape
        q = self.q(text.view(b, c, 1, 1, 1)).view(b, c)
        out = text_image_attention(q, self.kv_channel_major(x), self.heads)
        return self.proj(out.view(b, c, 1, 1, 1))  # (B, C, 1, 1, 1)


class FusionBlock(nn.Module):
    """One text-image block (see module docstring)."""

    def __init__(self, dim: int, text_dim: int, heads: int, ffn_expansion: float = 2.0):
        super().__init__()
        self.text_lora = MLP(text_dim, dim, [dim])
        self.c_attn = TextCrossAttention(dim, heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.mlp = GatedDWConvFFN(dim, ffn_expansion)
        self.norm3 = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gate = self.c_attn(x, self.text_lora(text.to(x.dtype)))
        x = x * gate
        x = self.norm2(x)
        x = x + self.mlp(x)
        return self.norm3(x)


class TextImageFusion(nn.Module):
    """A stack of fusion blocks (the published network has one): keys ``block.{i}.*``."""

    def __init__(self, dim: int, text_dim: int, heads: int, ffn_expansion: float = 2.0, n_blocks: int = 1):
        super().__init__()
        self.block = nn.ModuleList([FusionBlock(dim, text_dim, heads, ffn_expansion) for _ in range(n_blocks)])

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        for blk in self.block:
            x = blk(x, text)
        return x
