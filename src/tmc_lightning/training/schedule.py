"""The learning-rate schedule: warm-up, then cosine or linear decay to a floor.

Two clocks drive it. Without a budget (``budget.time`` and ``budget.steps`` unset) it runs
per epoch over ``trainer.max_epochs``, exactly as before budgets existed. Under a budget
(:mod:`tmc_lightning.training.budget`) it runs per optimizer step on the budget's *progress*,
``max(steps done / steps planned, time used / time budget)``, so warm-up and decay end when
the budget does, whichever of its two limits comes first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

SCHEDULERS = ("cosine", "linear", "none")
WARMUP_START = 0.01  # a budget's warm-up starts at 1% of the learning rate, not at 0


class Progress(Protocol):
    def progress(self, steps_done: int) -> float: ...


def decay(kind: str, t: float, floor: float) -> float:
    """The decay's factor at fraction ``t`` (0..1) of it: 1 at the start, ``floor`` at the end."""
    t = min(max(t, 0.0), 1.0)
    if kind == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if kind == "linear":
        return floor + (1 - floor) * (1 - t)
    return 1.0


def budget_factor(progress: float, kind: str, warmup: float, floor: float) -> float:
    """The learning rate / ``optim.lr`` at ``progress`` (0..1) of a budget."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return WARMUP_START + (1 - WARMUP_START) * progress / warmup
    return decay(kind, (progress - warmup) / max(1 - warmup, 1e-12), floor)


def check_scheduler(kind: str) -> None:
    if kind not in SCHEDULERS:
        raise ValueError(
            f"optim.scheduler={kind!r} is not supported; use one of {', '.join(SCHEDULERS)} "
            "(linear with optim.min_lr_ratio=0 is linear-to-zero)"
        )


def make_scheduler(
    opt: torch.optim.Optimizer, hp: Any, budget: Progress | None = None
) -> dict[str, Any]:
    """``configure_optimizers``'s return value for the module's hyper-parameters ``hp``.

    ``budget`` (an object with ``progress(steps_done)`` and ``warmup``) switches to the
    per-step budget schedule; without it the schedule is the per-epoch one over
    ``hp.max_epochs`` with ``hp.warmup_epochs`` of warm-up.
    """
    check_scheduler(hp.scheduler)
    if hp.scheduler == "none":
        return {"optimizer": opt}
    kind, floor = hp.scheduler, hp.min_lr_ratio
    factor: Callable[[int], float]
    if budget is not None:
        warmup = float(getattr(budget, "warmup", 0.0))

        # A closure, not a callable object: LambdaLR would pickle an object's attributes
        # (the clock) into the checkpoint. Its state is the step count alone; the time part
        # comes back with the budget callback's own state.
        def factor(step: int) -> float:
            return budget_factor(budget.progress(step), kind, warmup, floor)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    warm, total = hp.warmup_epochs, max(hp.max_epochs, 1)

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        t = min((epoch - warm) / max(total - warm, 1), 1.0)
        if kind == "linear":
            return floor + (1 - floor) * (1 - t)
        # torch's float32 cosine, as before budgets existed (recorded runs reproduce bitwise)
        return floor + (1 - floor) * 0.5 * (1 + torch.cos(torch.tensor(t * torch.pi)).item())

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
