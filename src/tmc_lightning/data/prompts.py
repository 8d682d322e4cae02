"""A prompt level with alternatives (MedVLSM's p7-p9): one drawn per item per epoch in training.

The draw depends only on the item's seed, which :class:`EpochShuffleSampler` derives from the
run's seed, the epoch and the position: a resumed run draws what an uninterrupted one would.
The training :class:`~tmc_lightning.data.triples.TripleDataset` asks its table for the item's
prompt after its flip and before text dropout; validation and test have no table and use each
item's first alternative.
"""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer

from tmc_lightning.data import synthetic
from tmc_lightning.data.layouts import Sample
from tmc_lightning.data.text import encode

# Mixed into the item seed so that the draw is its own stream: the augmentation, flip and text
# dropout of every item stay what they are without alternatives.
_STREAM = 0x5EED

Drawn = tuple[torch.Tensor, torch.Tensor, str]  # input ids, attention mask, text


class PromptChoices:
    """Every item's alternatives, tokenised once (and side-swapped for flipped items)."""

    def __init__(
        self, samples: list[Sample], tokenizer: Tokenizer, max_words: int, hflip: bool
    ) -> None:
        self.options: list[list[int]] = []  # per item: rows of the flat tables below
        flat: list[str] = []
        for s in samples:
            alts = list(s.alternatives) or [s.text]
            self.options.append(list(range(len(flat), len(flat) + len(alts))))
            flat += alts
        self.texts = flat
        self.tokens = encode(tokenizer, flat, max_words)
        self.swapped_texts = [synthetic.swap_laterality(t) for t in flat]
        self.swapped = encode(tokenizer, self.swapped_texts, max_words) if hflip else None

    def draw(self, i: int, item_seed: int) -> int:
        """The row of the flat tables item ``i`` gets under ``item_seed``."""
        rows = self.options[i]
        if len(rows) == 1:
            return rows[0]
        return rows[int(np.random.default_rng([item_seed, _STREAM]).integers(len(rows)))]

    def pick(self, i: int, item_seed: int, flipped: bool) -> Drawn | None:
        """Item ``i``'s drawn prompt (side-swapped if its image was flipped); None: one only."""
        if len(self.options[i]) == 1:
            return None
        row = self.draw(i, item_seed)
        if flipped and self.swapped is not None:
            return self.swapped[0][row], self.swapped[1][row], self.swapped_texts[row]
        return self.tokens[0][row], self.tokens[1][row], self.texts[row]


def with_prompt_choices(ds, samples: list[Sample], tokenizer: Tokenizer, max_words: int):
    """``ds`` (a training TripleDataset), given a :class:`PromptChoices` table when some item
    has alternatives."""
    if any(s.alternatives for s in samples):
        ds.choices = PromptChoices(samples, tokenizer, max_words, hflip=ds.swapped is not None)
    return ds
