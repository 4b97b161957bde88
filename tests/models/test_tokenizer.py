"""CLIP tokenizer: published prompt lengths, pinned ids, padding, overflow."""

from __future__ import annotations

import pytest
import torch

from tumsyn_bids.errors import DataError
from tumsyn_bids.models.tokenizer import (
    EOT_TOKEN,
    SOT_TOKEN,
    VOCAB_SIZE,
    TokenOverflowError,
    count_tokens,
    get_tokenizer,
    tokenize,
)

T1W_PROMPT = (
    "Age: 12; Gender: M; Scanner: 3.0 Siemens; Modality: T1w; Voxel size: (0.8, 0.8, 0.8); "
    "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (2500.0, 2.2, 1000.0, 8.0)"
)
T2W_PROMPT = (
    "Age: 16; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (0.8, 0.8, 0.8); "
    "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree):  (3200.0, 563.0, None, T2var)"
)
# Ids of T2W_PROMPT without start/end, cross-checked against open_clip 3.3.0's SimpleTokenizer
# (regex + ftfy implementation of the same merge list) when this test was written.
T2W_IDS = [
    805, 281, 272, 277, 282, 5906, 281, 325, 282, 24185, 281, 274, 269, 271, 30147, 282, 6362, 1694,
    281, 339, 273, 342, 282, 29215, 832, 3235, 281, 263, 271, 269, 279, 267, 271, 269, 279, 267, 271,
    269, 279, 19686, 14231, 699, 23393, 6337, 263, 988, 2361, 756, 263, 988, 2361, 2605, 263, 988,
    2361, 537, 2800, 263, 7119, 4143, 263, 274, 273, 271, 271, 269, 271, 267, 276, 277, 274, 269, 271,
    267, 8906, 267, 339, 273, 12998, 264,
]


def test_published_prompts_token_counts():
    # The reference says the two examples take 82-85 tokens: the T1w one is the longer.
    assert count_tokens(T1W_PROMPT) == 85
    assert count_tokens(T2W_PROMPT) == 82


def test_pinned_ids_and_layout():
    tokens = tokenize([T2W_PROMPT, T1W_PROMPT])
    assert tokens.shape == (2, 90) and tokens.dtype == torch.long
    row = tokens[0].tolist()
    assert row[0] == SOT_TOKEN
    assert row[1:81] == T2W_IDS
    assert row[81] == EOT_TOKEN
    assert row[82:] == [0] * 8  # zero padded
    assert int(tokens[1].argmax()) == 84  # end token of the 85-token prompt


def test_vocabulary_and_basic_words():
    tok = get_tokenizer()
    assert len(tok.encoder) == VOCAB_SIZE
    assert tok.encoder["<|startoftext|>"] == SOT_TOKEN and tok.encoder["<|endoftext|>"] == EOT_TOKEN
    assert tok.encode("hello world") == [3306, 1002]
    assert tok.encode("HeLLo   World") == tok.encode("hello world")  # lower case, whitespace collapsed
    # each digit is its own token
    assert [tok.decoder[i] for i in tok.encode("2500")] == ["2</w>", "5</w>", "0</w>", "0</w>"]
    assert tok.decode(tok.encode("TR(ms) 2500.0")) == "tr ( ms ) 2 5 0 0 . 0"


def test_special_strings_in_text_are_not_special():
    ids = get_tokenizer().encode("t2w <|endoftext|> flair")
    assert EOT_TOKEN not in ids and SOT_TOKEN not in ids


def test_overflow_is_an_error():
    long_prompt = T1W_PROMPT + " extra words" * 3  # 85 + 6 tokens > 90
    with pytest.raises(TokenOverflowError, match="91 tokens"):
        tokenize(long_prompt)
    assert issubclass(TokenOverflowError, DataError)
    assert tokenize(T1W_PROMPT + " extra words", context_length=90).shape == (1, 90)  # 87 fits
