"""Samplers that make training order and evaluation shards depend on the seed and epoch only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


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
        self.start = 0  # positions to skip in the next epoch's order (a mid-epoch resume)

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        item_seeds = torch.randint(0, 2**31 - 1, (self.n,), generator=g).tolist()
        pairs = list(zip(order, item_seeds, strict=True))[self.rank :: self.world]
        start, self.start = self.start, 0  # once: the epoch after this one starts at its top
        return iter(pairs[start : len(self)])


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


class ResumableLoader(DataLoader):
    """The train loader, with its position in the epoch saved in checkpoints.

    Lightning saves ``state_dict()`` of such a loader with every checkpoint and hands it back
    to ``load_state_dict()`` on resume, before iterating. The position is read from the
    trainer's count of processed batches (``progress``: epoch, batches processed, batches per
    epoch), not counted here, because Lightning fetches a batch ahead of the one it trains on.
    On resume the sampler skips the batches already trained on, without loading them.
    """

    def __init__(
        self, *args: Any, progress: Callable[[], tuple[int, int, int]] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self._progress = progress
        self._skip = 0
        self._resume_epoch: int | None = None

    def state_dict(self) -> dict[str, int]:
        epoch, done, per_epoch = self._progress() if self._progress else (0, 0, 0)
        return {"epoch": int(epoch), "batches_done": int(done) if done < per_epoch else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = int(state.get("batches_done", 0))
        # The epoch the resume trains: the saved one mid-epoch, the next after an epoch's end.
        self._resume_epoch = int(state.get("epoch", 0)) + (0 if self._skip else 1)

    def __iter__(self):
        # On a resume Lightning creates the iterator before it sets the sampler's epoch, and
        # worker processes read the sampler at once: give it the epoch it is about to train.
        if self._resume_epoch is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self._resume_epoch)
        self._resume_epoch = None
        if self._skip:
            self.sampler.start = self._skip * self.batch_size
            self._skip = 0
        return super().__iter__()
