"""Samplers that make training order and evaluation shards depend on the seed and epoch only."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler):
    """Shuffles by ``(seed, epoch)`` and hands each index its own augmentation seed.

    Both depend only on the seed, the epoch and the position, so a run resumed from a
    checkpoint sees exactly the batches and augmentations an uninterrupted run would.
    Under DDP each of ``world`` ranks takes every ``world``-th position of the same order,
    cut to equal lengths so that every rank runs the same number of steps.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        item_seeds = torch.randint(0, 2**31 - 1, (self.n,), generator=g).tolist()
        pairs = list(zip(order, item_seeds, strict=True))[self.rank :: self.world]
        return iter(pairs[: len(self)])


class ShardSampler(Sampler):
    """Evaluation order under DDP: rank r scores items r, r + world, ... and nothing twice.

    Lightning's default distributed sampler pads the split with repeated items so that every
    rank gets the same count; repeated items would bias split-level Dice, so eval does not pad.
    """

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))
