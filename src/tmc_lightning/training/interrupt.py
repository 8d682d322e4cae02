"""Ctrl-C and SIGTERM: finish the current step, write ``last.ckpt`` there, exit cleanly.

A resume from that checkpoint continues mid-epoch exactly where the run stopped: the train
loader is resumable (:class:`~tmc_lightning.data.samplers.ResumableLoader`), so it skips the
batches already trained on, and every draw depends on the seed, the epoch and the position.
A second Ctrl-C while the checkpoint is written stops at once.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L

log = logging.getLogger("tmc_lightning.train")
SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal number, as shells report them


class TrainingInterrupted(BaseException):  # noqa: N818 - not an error, like KeyboardInterrupt
    """Training stopped on a signal after saving ``last.ckpt``; the message says how to resume."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal_name, 1)


class GracefulInterrupt(L.Callback):
    """Turns SIGINT/SIGTERM into a checkpoint at the next step boundary and a clean exit."""

    def __init__(self, last_path: Path) -> None:
        self.last_path = Path(last_path)
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = SIGNALS.get(signum, str(signum))
        log.warning("%s received: stopping after the current step", self.received)
        # A second signal stops at once: Python's Ctrl-C (KeyboardInterrupt), SIGTERM's default.
        again = self._previous.get(signum) if signum == signal.SIGINT else None
        signal.signal(signum, again or signal.SIG_DFL)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning's own signal setup (which may have registered a SIGTERM notifier).
        if trainer.world_size > 1 or not _main_thread():
            return  # DDP ranks stop together through Lightning's SIGTERM handling
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handler)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received:
            self.stop(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def stop(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` at this step and end the run with :class:`TrainingInterrupted`."""
        trainer.save_checkpoint(self.last_path)
        raise TrainingInterrupted(
            f"{self.received}: stopped at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}) and wrote {self.last_path}; continue with "
            f"python -m tmc_lightning.train ckpt_path={self.last_path}",
            self.received or "",
        )


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
