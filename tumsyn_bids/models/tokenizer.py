"""CLIP byte-level BPE tokenizer (49,408 tokens, start 49406, end 49407), context 90, zero-padded.

The merge list ships in ``tumsyn_bids/data/clip`` (MIT, see the LICENSE beside it). The
pre-tokenizer follows CLIP's rules: lower-case, whitespace collapsed, then the text is cut into
the contractions ``'s 't 're 've 'm 'll 'd``, runs of letters, single
number characters (so each digit is its own token) and runs of other non-space characters. It
is written as a small scanner over Unicode categories so no extra dependency is needed. Special
token strings typed in the text are NOT turned into start/end tokens (as in open_clip), so a prompt
cannot move the pooled end-token position. Text
longer than the context raises :class:`TokenOverflowError` instead of being cut silently.
"""

from __future__ import annotations

import gzip
import html
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources

from tumsyn_bids.errors import DataError

VOCAB_SIZE = 49408
SOT_TOKEN = 49406
EOT_TOKEN = 49407
CONTEXT_LENGTH = 90
_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


class TokenOverflowError(DataError):
    """A prompt needs more tokens than the text encoder's context holds."""


def _byte_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2 reversible map from the 256 byte values to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    mapping = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _is_number(ch: str) -> bool:
    return unicodedata.category(ch).startswith("N")


def pre_tokenize(text: str) -> list[str]:
    """Split cleaned, lower-cased text into CLIP pre-tokens (before byte-level BPE)."""
    pieces: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            contraction = next((c for c in _CONTRACTIONS if text.startswith(c, i)), None)
            if contraction is not None:
                pieces.append(contraction)
                i += len(contraction)
                continue
        if _is_letter(ch):
            j = i + 1
            while j < n and _is_letter(text[j]):
                j += 1
        elif _is_number(ch):
            j = i + 1
        elif ch.isspace():
            i += 1
            continue
        else:
            j = i + 1
            while j < n and not (text[j].isspace() or _is_letter(text[j]) or _is_number(text[j])):
                j += 1
        pieces.append(text[i:j])
        i = j
    return pieces


# The text fixes CLIP applies with ftfy that can matter for prompts: curly quotes, Latin
# ligatures and full-width ASCII (ftfy is not needed for the plain ASCII of TUMSyn prompts).
_FIXES = str.maketrans(
    {
        **{c: "'" for c in "\u2018\u2019\u201a\u201b"},
        **{c: '"' for c in "\u201c\u201d\u201e\u201f"},
        "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb06": "st",
        "\u3000": " ",
        **{chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)},
    }
)


def clean_text(text: str) -> str:
    """Unicode NFC, quotes/ligatures/width fixed, HTML entities resolved, whitespace collapsed, lower case."""
    text = unicodedata.normalize("NFC", text).translate(_FIXES)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """Byte-level BPE with the CLIP merge list; ``encode`` gives ids without start/end."""

    def __init__(self, merges: Sequence[tuple[str, str]]):
        self.byte_encoder = _byte_to_unicode()
        base = list(self.byte_encoder.values())
        vocab = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + list(_SPECIALS)
        if len(vocab) != VOCAB_SIZE:
            raise DataError(f"CLIP vocabulary has {len(vocab)} entries, expected {VOCAB_SIZE}")
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self._cache: dict[str, list[str]] = {}

    def _bpe(self, piece: str) -> list[str]:
        if piece in self._cache:
            return self._cache[piece]
        word = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[k], word[k + 1]) for k in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            k = 0
            while k < len(word):
                if k < len(word) - 1 and (word[k], word[k + 1]) == best:
                    merged.append(word[k] + word[k + 1])
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        self._cache[piece] = word
        return word

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (cleaned, lower-cased), without start/end tokens."""
        ids: list[int] = []
        for piece in pre_tokenize(clean_text(text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(mapped))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Approximate inverse of :meth:`encode` (lower-cased, single spaces)."""
        byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        text = "".join(self.decoder[int(i)] for i in ids if int(i) not in (0, SOT_TOKEN, EOT_TOKEN))
        words = [bytearray(byte_decoder[c] for c in part).decode("utf-8", errors="replace")
                 for part in text.split("</w>")]
        return " ".join(words).strip()


def _load_merges() -> list[tuple[str, str]]:
    ref = resources.files("tumsyn_bids") / "data" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    with ref.open("rb") as fh, gzip.open(fh, "rt", encoding="utf-8") as gz:
        lines = gz.read().split("\n")
    # First line is a header; CLIP uses the next 49408 - 256*2 - 2 merges.
    selected = lines[1 : VOCAB_SIZE - 256 * 2 - 2 + 1]
    return [tuple(line.split()) for line in selected]  # type: ignore[misc]


@lru_cache(maxsize=1)
def get_tokenizer() -> ClipTokenizer:
    """The shared tokenizer (vocabulary read once per process)."""
    return ClipTokenizer(_load_merges())


def count_tokens(text: str) -> int:
    """Number of tokens of ``text`` including start and end tokens."""
    return len(get_tokenizer().encode(text)) + 2


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH):
    """Tokenize one or more prompts into a ``LongTensor (B, context_length)``, zero-padded.

    Raises :class:`TokenOverflowError` when a prompt (with start/end) exceeds ``context_length``.
    """
    import torch

    if isinstance(texts, str):
        texts = [texts]
    tok = get_tokenizer()
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [SOT_TOKEN, *tok.encode(text), EOT_TOKEN]
        if len(ids) > context_length:
            raise TokenOverflowError(
                f"prompt needs {len(ids)} tokens but the text encoder holds {context_length}: {text[:60]!r}..."
            )
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out
