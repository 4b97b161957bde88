"""Fixtures for inference tests: tiny hand-made networks with known behaviour, and a bundle shell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def sample(feat: torch.Tensor, coords: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Trilinear sample of feat (B,C,D,H,W) at coords (B,Q,3) in array-axis order -> (B,Q,C)."""
    grid = coords.flip(-1)[:, :, None, None, :].to(feat.dtype)
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return out[:, :, :, 0, 0].transpose(1, 2)


class IdentityNet(torch.nn.Module):
    """encode = the input itself; decode = trilinear sample at the query (a perfect interpolator)."""

    def __init__(self, padding: str = "border"):
        super().__init__()
        self.padding = padding
        self.seen: list[tuple[int, ...]] = []
        self.dummy = torch.nn.Linear(2, 2)  # gives the engine a decoder width to size chunks

    def encode(self, x, text_feat):
        self.seen.append(tuple(x.shape))
        return x + 0.0 * text_feat.sum()

    def decode(self, feat, coords):
        return sample(feat, coords, self.padding)


class CoordNet(IdentityNet):
    """decode = the query's coordinate channel ``k`` (reveals the axis order the network sees)."""

    def __init__(self, k: int = 0):
        super().__init__()
        self.k = k
        self.queries: list[torch.Tensor] = []

    def decode(self, feat, coords):
        self.queries.append(coords.detach().clone())
        return coords[..., self.k : self.k + 1]


class Bundle:
    """The ModelBundle attributes the engine uses."""

    def __init__(self, net: torch.nn.Module, axis_order: str = "xyz", window: int = 16):
        self.net = net.eval()
        self.axis_order = axis_order
        self.spec = {"window": window}
        self.name = "test"

    def encode_prompt(self, text: str) -> torch.Tensor:
        return torch.ones(1, 4)


def smooth_volume(shape, seed: int = 0) -> np.ndarray:
    """A smooth non-negative test volume: wide Gaussian blobs, zero on the outer faces."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    vol = np.zeros(shape)
    for _ in range(4):
        centre = rng.uniform(0, 1, 3) * np.asarray(shape)
        width = rng.uniform(0.25, 0.4) * min(shape)
        vol += rng.uniform(0.5, 1.0) * np.exp(
            -sum((g - c) ** 2 for g, c in zip(grids, centre, strict=False)) / (2 * width**2))
    # taper to exactly zero on the outer faces, like a skull-stripped brain's background
    for axis, n in enumerate(shape):
        taper = np.sin(np.pi * np.arange(n) / max(n - 1, 1)) ** 2 if n > 2 else np.ones(n)
        vol *= taper.reshape([-1 if a == axis else 1 for a in range(3)])
    return (100.0 * vol).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_bundle():
    """A random-weight bundle of the real networks (lccd + CLIP text tower), scaled right down."""
    from tumsyn_bids.models.configs import ModelConfig, SynthesisConfig, TextConfig
    from tumsyn_bids.models.loading import make_random_bundle

    tiny = ModelConfig(
        name="tiny-test",
        text=TextConfig(width=32, layers=1, heads=2, embed_dim=16),
        synthesis=SynthesisConfig(enc_width=8, n_resblocks=1, feat_dim=16, text_dim=16, heads=2,
                                  decoder_hidden=(16, 16)),
    )
    return make_random_bundle(tiny, seed=1)
