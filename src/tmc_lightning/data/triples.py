"""One split's decoded images and masks with pre-tokenised texts: what the loaders serve."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tmc_lightning.data import synthetic
from tmc_lightning.data.layouts import Sample
from tmc_lightning.data.transforms import image_to_tensor


class TripleDataset(Dataset):
    """Decoded images and masks plus pre-tokenised texts of one split."""

    def __init__(
        self,
        samples: list[Sample],
        images: np.ndarray,
        masks: np.ndarray,
        tokens: tuple[torch.Tensor, torch.Tensor],
        swapped_tokens: tuple[torch.Tensor, torch.Tensor] | None = None,
        transform: Any = None,
        hflip_p: float = 0.0,
        seed: int = 0,
        text_dropout: float = 0.0,
        empty_tokens: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.samples, self.images, self.masks = samples, images, masks
        self.tokens, self.swapped = tokens, swapped_tokens
        self.transform, self.hflip_p = transform, hflip_p
        self.seed = seed
        self.texts = [s.text for s in samples]  # what each item is given (tmc-eval text modes)
        if text_dropout > 0 and empty_tokens is None:
            raise ValueError("text_dropout > 0 needs the empty prompt's tokens")
        self.text_dropout, self.empty = text_dropout, empty_tokens
        # Training with fewer masks (data/labels.py): which items keep their mask. None: all,
        # and items carry no "labelled" key. A hidden item skips the transform (its weak view).
        self.labelled: np.ndarray | None = None
        # A prompt level with alternatives (data/prompts.py): one drawn per item, training only.
        self.choices: Any = None

    def with_texts(
        self, texts: list[str], tokens: tuple[torch.Tensor, torch.Tensor]
    ) -> TripleDataset:
        """The same images and masks, each given ``texts[i]`` (tokenised as ``tokens``)."""
        if len(texts) != len(self):
            raise ValueError(f"{len(texts)} texts for {len(self)} items")
        out = copy.copy(self)
        out.texts, out.tokens, out.swapped, out.text_dropout = list(texts), tokens, None, 0.0
        out.choices = None  # the given texts, not a level's alternatives
        return out

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, item_seed = key if isinstance(key, tuple) else (key, self.seed + key)
        rng = np.random.default_rng(item_seed)
        image, mask = np.array(self.images[i]), np.array(self.masks[i])  # copies off the memmap
        ids, attn = self.tokens[0][i], self.tokens[1][i]
        text = self.texts[i]
        flipped = False
        hidden = self.labelled is not None and not self.labelled[i]
        if self.hflip_p > 0 and self.swapped is not None and rng.random() < self.hflip_p:
            # Flipping swaps the patient's sides on the image, so the text must swap them too.
            image, mask = image[:, ::-1], mask[:, ::-1]
            ids, attn = self.swapped[0][i], self.swapped[1][i]
            text = synthetic.swap_laterality(text)
            flipped = True
        if self.choices is not None and (drawn := self.choices.pick(i, item_seed, flipped)):
            ids, attn, text = drawn
        if self.transform is not None:
            self.transform.set_random_seed(int(rng.integers(2**31 - 1)))
        if self.transform is not None and not hidden:
            out = self.transform(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(mask))
            image, mask = out["image"], out["mask"]
        # Drawn last, and only when on: the augmentation of every item stays what it was.
        if self.text_dropout > 0 and rng.random() < self.text_dropout:
            ids, attn, text = self.empty[0][0], self.empty[1][0], ""
        item = {
            "image": image_to_tensor(image),
            "mask": torch.from_numpy(np.ascontiguousarray(mask))[None].float(),
            "input_ids": ids,
            "attention_mask": attn,
            "text": text,
            "name": self.samples[i].name,
        }
        if self.labelled is not None:
            if hidden:
                item["mask"] = torch.zeros_like(item["mask"])
            item.update(labelled=not hidden, index=i, flipped=flipped)
        return item
