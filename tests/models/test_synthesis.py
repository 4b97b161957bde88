"""Synthesis network: the published key/shape manifest (meta device), shapes, sampling conventions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tumsyn_bids.models.configs import LCCD_SMALL as SMALL
from tumsyn_bids.models.configs import OFFICIAL
from tumsyn_bids.models.decoder import sample_features
from tumsyn_bids.models.loading import infer_synthesis_args
from tumsyn_bids.models.synthesis import SynthesisNet


def _reference_manifest() -> dict[str, tuple[int, ...]]:
    """The published state dict as the reference describes it, written out independently."""
    m: dict[str, tuple[int, ...]] = {"encoder.head.0.weight": (256, 1, 3, 3, 3), "encoder.head.0.bias": (256,)}
    for i in range(24):
        for j in (0, 3):
            m[f"encoder.body.{i}.body.{j}.weight"] = (256, 256, 3, 3, 3)
            m[f"encoder.body.{i}.body.{j}.bias"] = (256,)
        for j in (1, 4):
            for name in ("weight", "bias", "running_mean", "running_var"):
                m[f"encoder.body.{i}.body.{j}.{name}"] = (256,)
            m[f"encoder.body.{i}.body.{j}.num_batches_tracked"] = ()
    m["encoder.body.24.weight"], m["encoder.body.24.bias"] = (256, 256, 3, 3, 3), (256,)
    m["encoder.tail.0.weight"], m["encoder.tail.0.bias"] = (768, 256, 3, 3, 3), (768,)
    f = "fusion.block.0."
    for j in (0, 2):
        m[f"{f}text_lora.layers.{j}.weight"], m[f"{f}text_lora.layers.{j}.bias"] = (768, 768), (768,)
    for name, out in (("q", 768), ("kv", 1536), ("proj", 768)):
        m[f"{f}c_attn.{name}.weight"], m[f"{f}c_attn.{name}.bias"] = (out, 768, 1, 1, 1), (out,)
    for norm in ("norm2", "norm3"):
        m[f"{f}{norm}.body.weight"], m[f"{f}{norm}.body.bias"] = (768,), (768,)
    m[f"{f}mlp.project_in.weight"] = (3072, 768, 1, 1, 1)
    m[f"{f}mlp.dwconv.weight"] = (3072, 1, 3, 3, 3)
    m[f"{f}mlp.project_out.weight"] = (768, 1536, 1, 1, 1)
    dims = [771, 3072, 3072, 768, 256, 1]
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=False)):
        m[f"imnet.layers.{2 * k}.weight"], m[f"imnet.layers.{2 * k}.bias"] = (b, a), (b,)
    return m


def test_official_manifest_on_meta_device():
    with torch.device("meta"):
        net = SynthesisNet.from_config(OFFICIAL.synthesis)
    sd = net.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == _reference_manifest()
    assert len(sd) == 369
    params = list(net.parameters())
    assert len(params) == 225 and len(list(net.buffers())) == 144
    assert sum(p.numel() for p in params) == 113_595_137
    # sizes inferred back from shapes give the official configuration again
    args = infer_synthesis_args(sd)
    with torch.device("meta"):
        assert SynthesisNet(**args).config == OFFICIAL.synthesis


def test_small_network_shapes_and_api():
    torch.manual_seed(0)
    net = SynthesisNet.from_config(SMALL.synthesis).eval()
    x = torch.rand(2, 1, 12, 10, 8)
    text = torch.randn(2, SMALL.synthesis.text_dim)
    coords = torch.rand(2, 50, 3) * 2 - 1
    with torch.no_grad():
        feat = net.encode(x, text)
        assert feat.shape == (2, SMALL.synthesis.feat_dim, 12, 10, 8)
        out = net.decode(feat, coords)
        assert out.shape == (2, 50, 1) and torch.isfinite(out).all()
        torch.testing.assert_close(net(x, text, coords), out)
        # the text conditions the output
        assert not torch.allclose(net.decode(net.encode(x, -text), coords), out)
    # BatchNorm: train mode uses batch statistics, eval mode the running ones
    assert net.encoder.body[0].body[1].training is False


def test_decoder_samples_at_cell_centres_in_array_axis_order():
    d, h, w = 4, 3, 2
    feat = torch.arange(d * h * w, dtype=torch.float64).view(1, 1, d, h, w)
    idx = torch.tensor([[3, 1, 0], [0, 2, 1], [2, 0, 1]], dtype=torch.float64)  # (i, j, k) array indices
    sizes = torch.tensor([d, h, w], dtype=torch.float64)
    coords = ((idx + 0.5) / sizes * 2 - 1)[None]  # cell centres, align_corners=False convention
    got = sample_features(feat, coords)[0, :, 0]
    expected = torch.tensor([feat[0, 0, 3, 1, 0], feat[0, 0, 0, 2, 1], feat[0, 0, 2, 0, 1]])
    torch.testing.assert_close(got, expected)
    # zero padding outside the window: half way past the last cell centre blends with zeros
    out = sample_features(torch.ones(1, 1, 2, 2, 2, dtype=torch.float64),
                          torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.full((1, 1, 1), 0.5, dtype=torch.float64))


def test_decoder_appends_raw_coordinates():
    torch.manual_seed(0)
    net = SynthesisNet(enc_width=4, n_resblocks=1, feat_dim=4, text_dim=4, heads=2, decoder_hidden=[]).double()
    feat = torch.zeros(1, 4, 3, 3, 3, dtype=torch.float64)
    coords = torch.tensor([[[0.1, -0.2, 0.3]]], dtype=torch.float64)
    lin = net.imnet.layers[0]  # a single Linear(4 + 3 -> 1)
    expected = lin.bias + lin.weight[0, 4:] @ coords[0, 0]
    torch.testing.assert_close(net.decode(feat, coords)[0, 0], expected)
    # same result as a manual grid_sample with reversed coordinate order
    feat = torch.randn(1, 4, 3, 4, 5, dtype=torch.float64)
    grid = coords.flip(-1).view(1, 1, 1, 1, 3)
    manual = F.grid_sample(feat, grid, align_corners=False, padding_mode="zeros").view(1, 4)
    torch.testing.assert_close(net.decode(feat, coords)[0], lin(torch.cat([manual, coords[0]], -1)))


def test_memory_format_and_bf16_do_not_change_results():
    torch.manual_seed(2)
    net = SynthesisNet.from_config(SMALL.synthesis).eval()
    x = torch.rand(1, 1, 10, 12, 9)
    text = torch.randn(1, SMALL.synthesis.text_dim)
    coords = torch.rand(1, 40, 3) * 2 - 1
    with torch.no_grad():
        fast = net(x, text, coords)  # channels-last weights (the default)
        net.to(memory_format=torch.contiguous_format)
        plain = net(x, text, coords)
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x, text, coords).float()
    assert (half - plain).abs().max() < 0.05 * plain.abs().max() + 0.05
