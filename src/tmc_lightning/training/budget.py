"""A training budget the schedule follows: wall-clock time, optimizer steps, or both.

``budget.time`` (e.g. ``60min``, ``1h30m``, ``01:00:00``) and ``budget.steps`` set what a run
may spend; the run's *progress* is ``max(steps done / steps planned, time used / time budget)``
and the learning-rate schedule (:mod:`tmc_lightning.training.schedule`) runs on it, so its
warm-up and decay end when the budget does. Steps planned are ``budget.steps``, else what
``trainer.max_steps`` / ``trainer.max_epochs`` allow (``-1``: unlimited, time alone decides).

Validation runs each time progress crosses a multiple of ``budget.val_every`` and once at the
end; the run then scores the best checkpoint (``training/run.py``). Time used is saved in every
checkpoint, so a resumed run continues the same schedule where it left off. A step budget is
bitwise reproducible (the clock is only recorded); a time budget depends on the machine.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf

from tmc_lightning.errors import ConfigError
from tmc_lightning.training.settings import section

log = logging.getLogger("tmc_lightning.train")
NEVER = 2**62  # val_check_interval (batches) that never comes: the budget decides validation
UNITS = {"d": 86400, "h": 3600, "m": 60, "min": 60, "s": 1}


@dataclasses.dataclass
class BudgetConfig:
    time: Any = None  # wall-clock budget: 60min | 1h30m | 90s | HH:MM:SS | DD:HH:MM:SS
    steps: Any = None  # optimizer-step budget (bitwise reproducible)
    warmup: float = 0.05  # the warm-up's share of the budget
    val_every: float = 0.25  # validate at every multiple of this fraction, and at the end


def parse_duration(value: Any, key: str = "budget.time") -> float:
    """Seconds in ``value``: ``90s``, ``60min``, ``1h30m``, ``2d``, ``HH:MM:SS``, ``DD:HH:MM:SS``."""
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(:\d+){2,3}", text):
        parts = [int(p) for p in text.split(":")]
        seconds = sum(p * u for p, u in zip(reversed(parts), (1, 60, 3600, 86400), strict=False))
    elif re.fullmatch(r"(\d+(\.\d+)?(d|h|min|m|s))+", text):
        seconds = sum(
            float(n) * UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(d|h|min|m|s)", text)
        )
    else:
        raise ConfigError(
            f"{key}={value!r} is not a duration; write e.g. {key}=60min, {key}=1h30m, "
            f"{key}=90s or {key}=01:00:00 (HH:MM:SS)"
        )
    if seconds <= 0:
        raise ConfigError(f"{key}={value!r} is not a positive duration; e.g. {key}=60min")
    return seconds


def budget_config(cfg: DictConfig) -> BudgetConfig:
    """``cfg.budget`` checked key by key (a config saved before budgets existed has none)."""
    b = section(cfg, "budget", BudgetConfig)
    if b.time is not None:
        parse_duration(b.time)
    if b.steps is not None and (not str(b.steps).isdigit() or int(b.steps) <= 0):
        raise ConfigError(f"budget.steps={b.steps!r} must be a positive number of optimizer steps")
    if not 0 <= float(b.warmup) < 1:
        raise ConfigError(
            f"budget.warmup={b.warmup} is the warm-up's share: 0 <= it < 1 (e.g. 0.05)"
        )
    if not 0 < float(b.val_every) <= 1:
        raise ConfigError(
            f"budget.val_every={b.val_every} is a fraction of the budget: 0 < it <= 1 "
            "(0.25: validate at 25%, 50%, 75% and 100%; 1: only at the end)"
        )
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    if b.time is not None or b.steps is not None:
        check_trainer(b, trainer)
    return b


def check_trainer(b: BudgetConfig, kwargs: dict[str, Any]) -> None:
    """A budget and the ``trainer.*`` settings it takes over must not both be set."""
    if b.time is not None and kwargs.get("max_time") is not None:
        raise ConfigError(
            f"budget.time={b.time!r} and trainer.max_time={kwargs['max_time']!r} are both set: "
            "budget.time ends the run and plans the schedule; remove trainer.max_time "
            "(or set budget.time=null to keep a cap the schedule ignores)"
        )
    given = kwargs.get("max_steps")
    if b.steps is not None and given not in (None, -1, int(b.steps)):
        raise ConfigError(
            f"budget.steps={b.steps} and trainer.max_steps={given} disagree: "
            "remove trainer.max_steps (budget.steps sets it)"
        )
    for key in ("val_check_interval", "check_val_every_n_epoch"):
        if kwargs.get(key) not in (None, 1, 1.0):
            raise ConfigError(
                f"trainer.{key}={kwargs[key]} and a budget are both set: under a budget, "
                f"budget.val_every says when to validate; remove trainer.{key}"
            )


class Budget(L.Callback):
    """Tracks a run's progress through its budget, validates on it and ends the run at 1.

    ``clock`` (seconds, monotonic) is replaceable so tests run a budget on a fake clock.
    The module's scheduler reads :meth:`progress` (``module.budget = this``).
    """

    def __init__(
        self,
        time_s: float | None = None,
        steps: int | None = None,
        warmup: float = 0.05,
        val_every: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.time_s, self.steps, self.warmup, self.val_every = time_s, steps, warmup, val_every
        self.clock = clock
        self.planned: float | None = steps  # set from the trainer at the start of training
        self.offset = 0.0  # time used before this process (a resumed run's checkpoint)
        self.started: float | None = None
        self.time_frac = 0.0  # time used / time budget at the last step (the same on all ranks)
        self.val_s = 0.0
        self.warmup_s: float | None = None
        self.next_val = val_every
        self.validations: list[dict[str, Any]] = []
        self.ended_by: str | None = None
        self.steps_done = 0
        self._validate_now = False
        self._val_start: float | None = None
        self._active = False
        self._original_check: Any = None

    @classmethod
    def from_config(
        cls, cfg: DictConfig, clock: Callable[[], float] = time.monotonic
    ) -> Budget | None:
        """The run's budget, or None where ``budget.time`` and ``budget.steps`` are both unset."""
        b = budget_config(cfg)
        if b.time is None and b.steps is None:
            return None
        return cls(
            time_s=None if b.time is None else parse_duration(b.time),
            steps=None if b.steps is None else int(b.steps),
            warmup=float(b.warmup),
            val_every=float(b.val_every),
            clock=clock,
        )

    # -- the trainer's settings -----------------------------------------------------------
    def trainer_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``trainer.*`` under this budget: its steps as max_steps, validation left to it."""
        check_trainer(BudgetConfig(time=self.time_s, steps=self.steps), kwargs)
        if self.steps is not None:
            kwargs["max_steps"], kwargs["max_epochs"] = self.steps, -1
        kwargs["check_val_every_n_epoch"], kwargs["val_check_interval"] = None, NEVER
        return kwargs

    # -- progress ---------------------------------------------------------------------------
    def time_used(self) -> float:
        """Seconds of training so far, this process and those before it."""
        if self.started is None:
            return self.offset
        return self.offset + self.clock() - self.started

    def progress(self, steps_done: int) -> float:
        """``max(steps done / steps planned, time used / time budget)``, at most 1."""
        frac = 0.0
        if self.planned and math.isfinite(self.planned):
            frac = steps_done / self.planned
        return min(max(frac, self.time_frac), 1.0)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # The time part of progress, read once per step, before the step: Lightning steps the
        # scheduler right after the optimizer, before on_train_batch_end. The learning rate and
        # the decision to stop then see the same value, on every rank (rank 0's clock).
        if not self._active or self.time_s is None:
            return
        frac = self.time_used() / self.time_s
        if trainer.world_size > 1:
            frac = float(trainer.strategy.broadcast(frac, src=0))
        self.time_frac = frac

    # -- hooks ------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._active = not trainer.fast_dev_run
        if not self._active:
            return
        self.planned = float(trainer.estimated_stepping_batches)
        self.started = self.clock()
        # Lightning decides "validate now?" in one place; the budget adds its own reasons.
        loop = trainer.fit_loop.epoch_loop
        original = loop._should_check_val_fx
        self._original_check = original

        def should_check_val(data_fetcher: Any) -> bool:
            return self._validate_now or original(data_fetcher)

        loop._should_check_val_fx = should_check_val
        what = []
        if self.time_s is not None:
            what.append(f"{self.time_s / 60:.1f} min")
        if math.isfinite(self.planned):
            what.append(f"{int(self.planned)} steps")
        log.info(
            "budget: %s, whichever ends first; %.0f%% warm-up; validation every %.0f%% and at "
            "the end%s",
            " or ".join(what),
            100 * self.warmup,
            100 * self.val_every,
            f" (resumed at {self.offset:.0f} s)" if self.offset else "",
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._active:
            return
        self.steps_done = trainer.global_step
        p = self.progress(trainer.global_step)
        if self.warmup_s is None and p >= self.warmup:
            self.warmup_s = self.time_used()
        if p >= 1.0:
            self.ended_by = "time" if self.time_frac >= 1.0 else "steps"
            trainer.should_stop = True
            self._validate_now = True
        elif p >= self.next_val - 1e-9:
            self._validate_now = True

    def _fitting(self, trainer: L.Trainer) -> bool:
        return (
            self._active and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        )

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            self._val_start = self.clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting(trainer) or self._val_start is None:
            return
        self.val_s += self.clock() - self._val_start
        self._val_start = None
        self._validate_now = False
        p = self.progress(trainer.global_step)
        self.next_val = (math.floor(p / self.val_every + 1e-9) + 1) * self.val_every
        dice = trainer.callback_metrics.get("val/dice")
        self.validations.append(
            {
                "step": trainer.global_step,
                "progress": round(p, 4),
                "time_s": round(self.time_used(), 1),
                "val_dice": None if dice is None else round(float(dice), 4),
            }
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._original_check is not None:
            trainer.fit_loop.epoch_loop._should_check_val_fx = self._original_check
            self._original_check = None
        if self.started is not None and stage == "fit":
            self.offset, self.started = self.time_used(), None  # the clock stops with fit

    # -- checkpoint -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "time_used_s": self.time_used(),
            "time_frac": self.time_frac,
            "val_s": self.val_s,
            "warmup_s": self.warmup_s,
            "next_val": self.next_val,
            "validations": list(self.validations),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.offset = float(state["time_used_s"])
        self.time_frac = float(state["time_frac"])
        self.val_s = float(state["val_s"])
        self.warmup_s = state["warmup_s"]
        self.next_val = float(state["next_val"])
        self.validations = list(state["validations"])
        self.started = None

    # -- the record -------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """What metrics.json keeps: the budget, what was used, and each phase's share."""
        used = self.time_used()
        warmup = used if self.warmup_s is None else self.warmup_s
        phases = {
            "warmup": warmup,
            "decay": used - warmup,
            "train": used - self.val_s,
            "validation": self.val_s,
        }
        out: dict[str, Any] = {
            "time_s": self.time_s,
            "steps_planned": (
                int(self.planned) if self.planned and math.isfinite(self.planned) else None
            ),
            "warmup": self.warmup,
            "val_every": self.val_every,
            "time_used_s": round(used, 1),
            "steps_done": self.steps_done,
            "progress": round(self.progress(self.steps_done), 4),
            "ended_by": self.ended_by or "not ended (stopped early or interrupted)",
            "phases_s": {k: round(v, 1) for k, v in phases.items()},
            "validations": self.validations,
        }
        if self.time_s:
            out["phases_of_time_budget"] = {k: round(v / self.time_s, 4) for k, v in phases.items()}
        return out
