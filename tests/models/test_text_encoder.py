"""CLIP text tower: shapes, end-token pooling, causal mask, stage-1 checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from tumsyn_bids.errors import DataError
from tumsyn_bids.models.checkpoint import load_state_strict
from tumsyn_bids.models.configs import OFFICIAL, TextConfig
from tumsyn_bids.models.text_encoder import TextEncoder, infer_text_config, text_state_from_stage1
from tumsyn_bids.models.tokenizer import tokenize

TINY = TextConfig(vocab_size=49408, context_length=90, width=64, layers=2, heads=1, embed_dim=16)


def _tiny() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder.from_config(TINY).eval()


def test_output_is_projected_end_token_feature_not_normalised():
    enc = _tiny()
    tokens = tokenize(["modality: t2w", "modality: flair; voxel size: (1.0, 1.0, 1.0)"])
    with torch.no_grad():
        out = enc(tokens)
        assert out.shape == (2, 16)
        assert not torch.allclose(out.norm(dim=-1), torch.ones(2))
        # manual pooling at the end token (argmax of ids)
        x = enc.token_embedding(tokens) + enc.positional_embedding
        x = enc.ln_final(enc.transformer(x, enc.attn_mask))
        end = tokens.argmax(-1)
        torch.testing.assert_close(out, x[torch.arange(2), end] @ enc.text_projection)


def test_causal_mask_ignores_tokens_after_the_end():
    enc = _tiny()
    tokens = tokenize("modality: t2w")
    changed = tokens.clone()
    changed[0, -5:] = 123  # after the end token; smaller than the end id so pooling is unchanged
    with torch.no_grad():
        torch.testing.assert_close(enc(tokens), enc(changed))


def test_official_sizes_on_meta_device():
    with torch.device("meta"):
        enc = TextEncoder.from_config(OFFICIAL.text)
    sd = enc.state_dict()
    assert tuple(sd["token_embedding.weight"].shape) == (49408, 512)
    assert tuple(sd["positional_embedding"].shape) == (90, 512)
    assert tuple(sd["text_projection"].shape) == (512, 768)
    assert len([k for k in sd if k.startswith("transformer.resblocks.")]) == 8 * 12
    assert "logit_scale" in sd and "attn_mask" not in sd
    assert infer_text_config(sd) == OFFICIAL.text


def test_stage1_checkpoint_skips_visual_keys():
    src = _tiny()
    stage1 = {f"visual.layer{i}.weight": torch.randn(3, 3) for i in range(3)}
    stage1.update({f"module.{k}": v for k, v in src.state_dict().items()})
    text_sd = text_state_from_stage1(stage1)
    assert not any(k.startswith("visual.") for k in text_sd)
    cfg = infer_text_config(text_sd)
    assert (cfg.width, cfg.layers, cfg.embed_dim, cfg.context_length) == (64, 2, 16, 90)
    dst = TextEncoder.from_config(TINY)
    load_state_strict(dst, text_sd)
    tokens = tokenize("age: 30")
    with torch.no_grad():
        torch.testing.assert_close(dst.eval()(tokens), src(tokens))


def test_inconsistent_or_foreign_state_is_rejected():
    sd = _tiny().state_dict()
    sd["text_projection"] = torch.zeros(32, 16)
    with pytest.raises(DataError, match="inconsistent text tower"):
        infer_text_config(sd)
    with pytest.raises(DataError, match="token_embedding"):
        infer_text_config({"visual.conv1.weight": torch.zeros(1)})
    with pytest.raises(DataError, match="expects tokens"):
        _tiny()(torch.zeros(1, 77, dtype=torch.long))
