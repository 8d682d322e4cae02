"""Training with fewer masks: which training images keep their mask, and how batches mix them.

``dataset.label_fraction=f`` keeps the masks of a fixed subset of the training split, chosen by
``dataset.label_seed`` alone (not the training seed): every method and seed of a study sees the
same labelled images. The choice depends only on the images' names, so it does not change with
the order a layout lists them in. The other images are *unlabelled*: image and text kept, mask
hidden (their items carry a zero mask and ``labelled=False``; nothing reads their true mask).

Supervised training on the labelled part (``semi=none``) trains on that subset alone. A
semi-supervised method (``semi=mean_teacher|epi_lv``, :mod:`tmc_lightning.training.semi`) keeps
every image; :class:`MixedBatchSampler` then makes every batch ``batch_size`` labelled items
followed by ``unlabelled`` unlabelled ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from tmc_lightning.errors import ConfigError

LABELLED_LIST = "labelled.txt"  # in the run folder: the labelled training images, one a line


def check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(
            f"dataset.label_fraction={fraction}: use a fraction in (0, 1], e.g. 0.25 "
            "(a quarter of the training masks)"
        )


def labelled_flags(names: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: which of the training images ``names`` keep their mask.

    ``round(fraction * N)`` of them (at least one), drawn by ``seed`` from the names sorted, so
    the subset depends on the names, the fraction and the seed only.
    """
    check_fraction(fraction)
    n = len(names)
    if len(set(names)) != n:
        raise ConfigError("dataset.label_fraction needs distinct training image names")
    k = n if fraction >= 1.0 else max(1, round(fraction * n))
    by_name = sorted(range(n), key=lambda i: names[i])
    chosen = np.random.default_rng(seed).permutation(n)[:k]
    flags = np.zeros(n, dtype=bool)
    flags[[by_name[j] for j in chosen]] = True
    return flags


class MixedBatchSampler(Sampler):
    """Batches of ``labelled`` labelled positions followed by ``unlabelled`` unlabelled ones.

    Yields ``(index, item_seed)`` pairs like :class:`~tmc_lightning.data.samplers.
    EpochShuffleSampler`, in blocks of ``labelled + unlabelled`` (the loader's batch size). An
    epoch is one pass over the unlabelled images in a ``(seed, epoch)`` order; the labelled
    images are drawn from as many ``(seed, epoch)`` shuffles of them as it takes. Under DDP rank
    ``r`` takes every ``world``-th block. ``start`` skips positions once (a mid-epoch resume).
    """

    def __init__(
        self,
        flags: np.ndarray,
        labelled: int,
        unlabelled: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.lab = np.flatnonzero(flags).tolist()
        self.unl = np.flatnonzero(~flags).tolist()
        if not self.lab or not self.unl:
            raise ConfigError(
                "semi-supervised training needs labelled and unlabelled training images: set "
                "dataset.label_fraction below 1 (and above 0), or use semi=none"
            )
        self.n_l, self.n_u = labelled, unlabelled
        self.seed, self.epoch, self.rank, self.world = seed, 0, rank, world
        self.start = 0

    @property
    def blocks(self) -> int:
        return len(self.unl) // self.n_u // self.world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.blocks * (self.n_l + self.n_u)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        unl = [self.unl[i] for i in torch.randperm(len(self.unl), generator=g).tolist()]
        total = self.blocks * self.world
        lab: list[int] = []
        while len(lab) < total * self.n_l:
            lab += [self.lab[i] for i in torch.randperm(len(self.lab), generator=g).tolist()]
        seeds = torch.randint(0, 2**31 - 1, (total * (self.n_l + self.n_u),), generator=g)
        out: list[tuple[int, int]] = []
        for b in range(self.rank, total, self.world):
            idx = lab[b * self.n_l : (b + 1) * self.n_l] + unl[b * self.n_u : (b + 1) * self.n_u]
            base = b * (self.n_l + self.n_u)
            out += zip(idx, seeds[base : base + len(idx)].tolist(), strict=True)
        start, self.start = self.start, 0
        return iter(out[start:])


def hide_masks(dm, samples: list, images: np.ndarray, masks: np.ndarray) -> tuple:
    """The training split under ``dataset.label_fraction``: ``(samples, images, masks, flags)``.

    Records the labelled names on ``dm.labelled_names``. Without unlabelled images in the
    batches (``dm.unlabelled_batch_size == 0``, supervised on the labelled part) the split is
    cut to the labelled images and ``flags`` is None; otherwise every image stays and ``flags``
    says which are labelled (the dataset hides the others' masks).
    """
    hp = dm.hparams
    flags = labelled_flags([s.name for s in samples], hp.label_fraction, hp.label_seed)
    dm.labelled_names = sorted(s.name for s, f in zip(samples, flags, strict=True) if f)
    if dm.unlabelled_batch_size:
        return samples, images, masks, flags
    keep = np.flatnonzero(flags)
    return [samples[i] for i in keep], images[keep], masks[keep], None
