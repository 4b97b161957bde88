"""The engine with the real (randomly initialised) TUMSyn networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.inference.conftest import smooth_volume
from tumsyn_bids.inference.engine import synthesize
from tumsyn_bids.inference.geometry import output_grid
from tumsyn_bids.prompts import Prompt

PROMPT = Prompt(modality="T2w", voxel_size=(1.0, 1.0, 1.0), age=40, sex="F", field_strength=3.0,
                vendor="Siemens", tr_ms=3200.0, te_ms=563.0, flip_angle="T2var")
KW = dict(device="cpu", progress=False)


@pytest.mark.parametrize(
    ("shape", "voxel", "target", "mode", "window"),
    [((20, 20, 20), (1.0, 1.0, 1.0), None, "fast", None),
     ((20, 20, 20), (1.0, 1.0, 1.0), 0.5, "faithful", None),
     ((61, 70, 33), (1.0, 1.0, 1.0), None, "faithful", 40),
     ((61, 70, 33), (0.9, 0.9, 2.0), (0.9, 0.9, 1.3), "fast", 32)],
)
def test_shapes_affines_and_no_nan(tiny_bundle, shape, voxel, target, mode, window):
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = (-30.0, 12.5, 4.0)
    res = synthesize(smooth_volume(shape), affine, PROMPT, tiny_bundle, voxel_size=target, mode=mode,
                     window=window, **KW)
    grid = output_grid(shape, affine, target)
    assert res.data.shape == grid.out_shape and res.data.dtype == np.float32
    np.testing.assert_allclose(res.affine, grid.affine)
    assert np.all(np.isfinite(res.data)) and res.data.std() > 0
    assert res.window == (window or 60) and res.windows >= 1 and res.device == "cpu"


def test_chunked_decoding_equals_one_shot(tiny_bundle):
    vol = smooth_volume((24, 22, 20))
    kw = dict(voxel_size=0.8, amp=False, window=16, **KW)
    one = synthesize(vol, np.eye(4), PROMPT, tiny_bundle, query_chunk=1 << 22, **kw)
    chunked = synthesize(vol, np.eye(4), PROMPT, tiny_bundle, query_chunk=777, **kw)
    np.testing.assert_allclose(chunked.data, one.data, rtol=0, atol=1e-6)
    assert np.abs(one.data).max() > 1e-3  # not trivially zero


def test_prompt_changes_output_and_runs_are_deterministic(tiny_bundle):
    vol = smooth_volume((20, 20, 20))
    a = synthesize(vol, np.eye(4), PROMPT, tiny_bundle, window=16, **KW)
    b = synthesize(vol, np.eye(4), PROMPT.text(), tiny_bundle, window=16, **KW)
    c = synthesize(vol, np.eye(4), PROMPT.with_(modality="FLAIR"), tiny_bundle, window=16, **KW)
    np.testing.assert_array_equal(a.data, b.data)
    assert np.abs(a.data - c.data).max() > 1e-4
    assert a.seconds > 0 and a.timings["encode"] > 0 and a.timings["decode"] > 0


def test_empty_windows_share_one_encoding_exactly(tiny_bundle):
    """A head in a large zero background: all-zero windows are encoded once, results unchanged."""
    vol = np.zeros((36, 36, 20), np.float32)
    vol[2:14, 3:15, 4:16] = smooth_volume((12, 12, 12))
    kw = dict(window=12, mode="faithful", amp=False, **KW)
    shared = synthesize(vol, np.eye(4), PROMPT, tiny_bundle, **kw)
    each = synthesize(vol, np.eye(4), PROMPT, tiny_bundle, share_empty_windows=False, **kw)
    assert shared.windows == each.windows == each.encoded and shared.encoded < shared.windows // 2
    np.testing.assert_allclose(shared.data, each.data, rtol=0, atol=1e-6)


class _DecodeOnly(torch.nn.Module):
    """The same network seen only through encode/decode (no ``imnet``): forces grid_sample decoding."""

    def __init__(self, net):
        super().__init__()
        self.inner = net

    def encode(self, x, text_feat):
        return self.inner.encode(x, text_feat)

    def decode(self, feat, coords):
        return self.inner.decode(feat, coords)


class _Shell:
    def __init__(self, bundle):
        self.net, self.spec, self.axis_order = _DecodeOnly(bundle.net), bundle.spec, bundle.axis_order
        self.encode_prompt = bundle.encode_prompt


@pytest.mark.parametrize("target", [None, (0.7, 1.3, 0.45)])
def test_separable_decoding_equals_grid_sample_decoding(tiny_bundle, target):
    vol = smooth_volume((26, 22, 14))
    kw = dict(voxel_size=target, amp=False, window=16, query_chunk=3000, **KW)
    fast = synthesize(vol, np.eye(4), PROMPT, tiny_bundle, **kw)
    generic = synthesize(vol, np.eye(4), PROMPT, _Shell(tiny_bundle), **kw)
    np.testing.assert_allclose(fast.data, generic.data, rtol=0, atol=2e-6)
    assert np.abs(generic.data).max() > 1e-3
