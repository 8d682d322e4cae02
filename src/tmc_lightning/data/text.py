"""Tokenisers: a WordPiece vocabulary built from training texts, or a pretrained one by name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from tokenizers import (
    Encoding,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_wordpiece(texts: Sequence[str], vocab_size: int = 4000) -> Tokenizer:
    """A lower-casing BERT-style WordPiece tokenizer whose vocabulary comes from ``texts``.

    Whole words (most frequent first, up to ``vocab_size``) plus every character, alone and as
    a ``##`` continuation, so unseen words still split into known pieces. Built by counting
    rather than by the library's trainer, whose numbering depends on thread timing: the same
    texts always give the same ids, hence the same embedding rows.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    budget = max(vocab_size - len(SPECIALS) - 2 * len(chars), 0)
    words = sorted(counts, key=lambda w: (-counts[w], w))[:budget]
    pieces = SPECIALS + sorted(set(words) | set(chars)) + [f"##{c}" for c in chars]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def load_pretrained(name: str) -> Tokenizer:
    """The fast tokenizer of a hub model or local directory (e.g. the text encoder's)."""
    from transformers import AutoTokenizer

    from tmc_lightning.hub import load_hf

    hf = load_hf(lambda n, **kw: AutoTokenizer.from_pretrained(n, **kw), name, "tokenizer")
    if not getattr(hf, "is_fast", False):
        raise ValueError(f"tokenizer {name!r} has no fast (Rust) version; TMC needs one")
    return hf.backend_tokenizer


def pad_id(tok: Tokenizer) -> int:
    # BERT, RoBERTa/T5-style, CLIP (which pads with its end-of-text token); the attention mask
    # hides padding anyway, so the fallback id 0 is only cosmetic.
    for token in ("[PAD]", "<pad>", "<|endoftext|>"):
        if (i := tok.token_to_id(token)) is not None:
            return i
    return 0


def encodings(tok: Tokenizer, texts: Sequence[str], max_words: int) -> list[Encoding]:
    """Each text's encoding, truncated and padded on the right to ``max_words`` tokens.

    Its ``tokens`` and ``special_tokens_mask`` line up with the ids the model gets.
    """
    tok = Tokenizer.from_str(tok.to_str())  # padding/truncation settings stay local to this call
    tok.enable_truncation(max_words)
    tok.enable_padding(length=max_words, pad_id=pad_id(tok))
    return tok.encode_batch(list(texts))


def encode(
    tok: Tokenizer, texts: Sequence[str], max_words: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both (N, max_words), truncated and padded on the right."""
    enc = encodings(tok, texts, max_words)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
    return ids, mask
