"""Tiny networks and batches: every registered model at the tiny preset, and tmc-bench's module."""

from __future__ import annotations

import torch

from tmc_lightning.benchmarking.measure import bench_model_kwargs
from tmc_lightning.models.registry import model_class
from tmc_lightning.training.module import SegmentationModule

SIZE, VOCAB, WORDS = 64, 60, 24  # WORDS: train.yaml's max_words
BASELINES = {"attunet", "unetpp", "transunet", "uctransnet"}


def tiny_kwargs(name: str, **extra) -> dict:
    kw = {"preset": "tiny", "image_size": SIZE, **extra}
    if model_class(name).uses_text:
        kw.update(vocab_size=VOCAB, max_words=WORDS)
    return kw


def make_batch(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, WORDS), generator=g)
    attention = torch.zeros(batch, WORDS, dtype=torch.long)
    attention[:, :9] = 1
    ids[:, 9:] = 0
    mask = torch.zeros(batch, 1, SIZE, SIZE)
    mask[:, :, 16:40, 20:44] = 1
    return {
        "image": torch.randn(batch, 3, SIZE, SIZE, generator=g),
        "input_ids": ids,
        "attention_mask": attention,
        "mask": mask,
    }


def tiny_module(name: str, **extra) -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(
        model_name=name, model_kwargs=tiny_kwargs(name, **extra), dice_weight=0.5, align_weight=0.1
    )


def bench_module(**perf: bool) -> SegmentationModule:
    """TMC tiny as tmc-bench builds it, seeded (for the speed-switch tests)."""
    torch.manual_seed(0)
    return SegmentationModule(
        model_name="tmc",
        model_kwargs=bench_model_kwargs("tmc", "tiny", SIZE, WORDS),
        dice_weight=0.5,
        align_weight=0.1,
        **perf,
    )
