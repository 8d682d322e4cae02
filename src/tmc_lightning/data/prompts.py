"""A prompt level with alternatives (MedVLSM's p7-p9): one drawn per item per epoch in training.

The draw depends only on the item's seed, which :class:`EpochShuffleSampler` derives from the
run's seed, the epoch and the position: a resumed run draws what an uninterrupted one would.
Validation and test never see this wrapper; they use each item's first alternative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tokenizers import Tokenizer
from torch.utils.data import Dataset

from tmc_lightning.data import synthetic
from tmc_lightning.data.layouts import Sample
from tmc_lightning.data.text import encode
from tmc_lightning.data.triples import TripleDataset

# Mixed into the item seed so that the draw is its own stream: the augmentation, flip and text
# dropout of every item stay what they are without alternatives.
_STREAM = 0x5EED


class PromptChoices(Dataset):
    """A training :class:`TripleDataset` whose items draw their prompt among alternatives."""

    def __init__(
        self, base: TripleDataset, samples: list[Sample], tokenizer: Tokenizer, max_words: int
    ) -> None:
        self.base = base
        self.options: list[list[int]] = []  # per item: rows of the flat tables below
        flat: list[str] = []
        for s in samples:
            alts = list(s.alternatives) or [s.text]
            self.options.append(list(range(len(flat), len(flat) + len(alts))))
            flat += alts
        self.flat_texts = flat
        self.tokens = encode(tokenizer, flat, max_words)
        self.swapped_texts = [synthetic.swap_laterality(t) for t in flat]
        self.swapped = encode(tokenizer, self.swapped_texts, max_words) if base.hflip_p else None

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str) -> Any:  # texts, samples, seed ... of the wrapped split
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def draw(self, i: int, item_seed: int) -> int:
        """The row of the flat tables item ``i`` gets under ``item_seed``."""
        rows = self.options[i]
        if len(rows) == 1:
            return rows[0]
        return rows[int(np.random.default_rng([item_seed, _STREAM]).integers(len(rows)))]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        base = self.base
        i, item_seed = key if isinstance(key, tuple) else (key, base.seed + key)
        out = base[key]
        if len(self.options[i]) == 1 or (out["text"] == "" and base.texts[i] != ""):
            return out  # one prompt only, or text dropout gave this item the empty prompt
        # The flip is TripleDataset's first draw from the item's generator (see its __getitem__).
        flipped = (
            base.hflip_p > 0
            and base.swapped is not None
            and np.random.default_rng(item_seed).random() < base.hflip_p
        )
        row = self.draw(i, item_seed)
        texts, (ids, attn) = (
            (self.swapped_texts, self.swapped) if flipped else (self.flat_texts, self.tokens)
        )
        out["input_ids"], out["attention_mask"], out["text"] = ids[row], attn[row], texts[row]
        return out


def with_prompt_choices(
    ds: TripleDataset, samples: list[Sample], tokenizer: Tokenizer, max_words: int
) -> Dataset:
    """``ds`` itself, or wrapped in :class:`PromptChoices` when some item has alternatives."""
    if not any(s.alternatives for s in samples):
        return ds
    return PromptChoices(ds, samples, tokenizer, max_words)
