"""The fusion block's published quirks, pinned on hand-checkable tensors."""

from __future__ import annotations

import numpy as np
import torch

from tumsyn_bids.models.fusion import FusionBlock, TextCrossAttention, text_image_attention


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _expected_channel_major(q: np.ndarray, kv: np.ndarray, heads: int, scale: float = 1.0) -> np.ndarray:
    """Token n = values [n*2C, (n+1)*2C) of the flat channel-major buffer; k first, then v."""
    c = q.size
    hd = c // heads
    flat = kv.reshape(-1)  # memory order of (2C, D, H, W)
    n_tok = flat.size // (2 * c)
    out = np.zeros(c)
    for h in range(heads):
        qh = q[h * hd : (h + 1) * hd]
        qh = qh / np.linalg.norm(qh)
        logits, values = [], []
        for n in range(n_tok):
            tok = flat[n * 2 * c : (n + 1) * 2 * c]
            k = tok[h * hd : (h + 1) * hd]
            values.append(tok[c + h * hd : c + (h + 1) * hd])
            logits.append(scale * float(qh @ (k / np.linalg.norm(k))))
        w = _softmax(np.array(logits))
        out[h * hd : (h + 1) * hd] = w @ np.array(values)
    return out


def test_channel_major_tokens_and_no_scale():
    # dim C=4, 2 heads of 2, a 1x1x3 window (N=3): kv has 8 channels x 3 voxels = 24 values.
    q = np.array([1.0, 0.0, 0.0, 2.0])
    kv = np.arange(24, dtype=np.float64).reshape(8, 1, 1, 3) % 5 - 2.0
    got = text_image_attention(torch.tensor(q)[None], torch.tensor(kv)[None], heads=2)[0].numpy()
    expected = _expected_channel_major(q, kv, heads=2)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)

    # Hand check of head 0: tokens are runs of 8 consecutive values of the flat buffer
    flat = kv.reshape(-1)
    assert flat[:8].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0, -2.0, -1.0, 0.0]
    k0 = [flat[0:2], flat[8:10], flat[16:18]]  # head-0 keys of tokens 0, 1, 2
    v0 = [flat[4:6], flat[12:14], flat[20:22]]
    logits = np.array([k[0] / np.hypot(*k) for k in k0])  # q head 0 = (1, 0) normalised
    np.testing.assert_allclose(got[:2], _softmax(logits) @ np.array(v0), rtol=1e-12)

    # The voxel-major reading (channels last) and a scaled softmax both give other numbers.
    voxel_major = np.moveaxis(kv, 0, -1).reshape(-1)
    assert not np.allclose(got, _expected_channel_major(q, voxel_major, heads=2))
    assert not np.allclose(got, _expected_channel_major(q, kv, heads=2, scale=1 / np.sqrt(2)))
    # q is L2-normalised: scaling the query changes nothing, so no scale can hide there either
    scaled_q = text_image_attention(torch.tensor(q)[None] / np.sqrt(2), torch.tensor(kv)[None], heads=2)
    np.testing.assert_allclose(scaled_q[0].numpy(), got, rtol=1e-12)

def test_module_path_equals_plain_reshape_for_any_memory_format():
    torch.manual_seed(0)
    attn = TextCrossAttention(dim=8, heads=2).double()
    x = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64)
    text = torch.randn(2, 8, dtype=torch.float64)
    q = attn.q(text.view(2, 8, 1, 1, 1)).view(2, 8)
    ref = attn.proj(text_image_attention(q, attn.kv(x), 2).view(2, 8, 1, 1, 1))
    for inp in (x, x.contiguous(memory_format=torch.channels_last_3d)):
        torch.testing.assert_close(attn(inp, text), ref, rtol=1e-10, atol=1e-10)


def test_gating_is_multiplicative_then_norm_mlp_norm():
    torch.manual_seed(1)
    block = FusionBlock(dim=4, text_dim=3, heads=2).double().eval()
    with torch.no_grad():  # make the gate a known constant vector g = proj bias
        block.c_attn.proj.weight.zero_()
        block.c_attn.proj.bias.copy_(torch.tensor([2.0, -1.0, 0.5, 3.0]))
    x = torch.randn(1, 4, 3, 3, 3, dtype=torch.float64)
    text = torch.randn(1, 3, dtype=torch.float64)
    gated = x * torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.float64).view(1, 4, 1, 1, 1)
    h = block.norm2(gated)
    expected = block.norm3(h + block.mlp(h))
    with torch.no_grad():
        torch.testing.assert_close(block(x, text), expected)
        # channel LayerNorm: zero mean / unit variance over channels at every voxel (weights 1, bias 0)
        n = block.norm2(x)
        torch.testing.assert_close(n.mean(1), torch.zeros_like(n.mean(1)), atol=1e-12, rtol=0)
