"""Stage-1 pieces: symmetric InfoNCE, temperature clamp, retrieval prompts, image views."""

from __future__ import annotations

import math

import numpy as np
import torch

from tumsyn_bids.prompts import Prompt, parse_prompt
from tumsyn_bids.training.stage1 import LOGIT_INIT, LOGIT_MAX, ClipPair, image_view, info_nce, retrieval_prompts


def test_info_nce_prefers_matching_pairs():
    aligned = torch.eye(5) * 10.0
    shuffled = aligned[torch.tensor([1, 2, 3, 4, 0])]
    assert info_nce(aligned) < 0.01 < math.log(5) - 0.1 < info_nce(shuffled)
    assert torch.isclose(info_nce(torch.zeros(5, 5)), torch.tensor(math.log(5)))


def test_logit_scale_starts_at_1_over_007_and_is_clamped():
    from tumsyn_bids.models.loading import make_random_bundle

    model = ClipPair(make_random_bundle("lccd-small").text_encoder, 32)
    assert math.isclose(float(model.logit_scale.detach()), LOGIT_INIT, rel_tol=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    from tumsyn_bids.models.tokenizer import tokenize

    text = Prompt("T1w", (1.0, 1.0, 1.0)).text()
    logits = model.logits(torch.zeros(1, 1, 16, 16, 16), tokenize([text]))
    assert float(logits.detach().abs().max()) <= math.exp(LOGIT_MAX) + 1e-3


def test_retrieval_prompts_cover_seven_contrasts_at_the_image_field():
    image_prompt = Prompt("T2w", (1.0, 1.0, 1.0), age=40, sex="F", field_strength=1.5, vendor="Philips",
                          tr_ms=5000.0, te_ms=95.0, flip_angle=90.0).text()
    names, texts = retrieval_prompts(image_prompt)
    assert names == ["T1w", "T2w", "FLAIR", "PDw", "T2starw", "SWI", "T1CE"]
    parsed = [parse_prompt(t) for t in texts]
    assert [p.modality for p in parsed] == ["T1w", "T2w", "FLAIR", "PD", "T2*w", "SWI", "T1CE"]
    assert all(p.field_strength == 1.5 and p.age == 40 for p in parsed)
    assert parsed[1].te_ms == 100.0  # the 1.5 T default T2w protocol, not the image's own TE


def test_image_view_pools_and_pads():
    vol = np.ones((20, 40, 12), np.float32)
    view = image_view(vol, 2, 16, np.random.default_rng(0))
    assert view.shape == (16, 16, 16)
    assert view.sum() == 10 * 16 * 6  # 10 x (crop 16 of 20) x 6 pooled voxels
