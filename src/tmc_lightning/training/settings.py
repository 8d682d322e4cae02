"""The training sections of the config (``optim``, ``loss``, ``perf``) as typed dataclasses.

Each default is written here once: ``conf/train.yaml`` repeats them for the reader (a test
checks that they agree), and :class:`~tmc_lightning.training.module.SegmentationModule` takes
its keyword defaults from these classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tmc_lightning.errors import check_keys


@dataclasses.dataclass
class OptimConfig:
    name: str = "adamw"  # adam | adamw
    lr: float = 3e-4
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | linear | none (training/schedule.py)
    warmup_epochs: int = 1
    min_lr_ratio: float = 0.01
    encoder_lr_ratio: float = 1.0  # pretrained encoders' learning rate / lr (e.g. 0.1)


@dataclasses.dataclass
class LossConfig:
    dice_weight: float = 0.0  # soft Dice beside BCE (0 = BCE only, the paper's)
    align_weight: float = 0.1  # lambda of the multi-stage alignment loss (0 = off)


@dataclasses.dataclass
class PerfConfig:
    channels_last: Any = "auto"  # true | false | auto
    compile: bool = False
    sdpa: bool = True
    keep_freed_memory: bool = True  # glibc malloc reuses freed memory (allocator.py)
    bf16_min_speedup: float = 1.15  # precision=auto on a CPU: bf16 only this much faster


def section(cfg: DictConfig, key: str, schema: type) -> Any:
    """``cfg.<key>`` as the ``schema`` dataclass; an unknown key raises, a missing one defaults.

    A section absent from the config (a run saved before it existed) or null gives the defaults.
    """
    values = OmegaConf.to_container(cfg[key], resolve=True) if key in cfg else None
    values = values or {}
    check_keys(values, [f.name for f in dataclasses.fields(schema)], key)
    return schema(**values)
