"""Callbacks and per-image records of a training run (the final scoring writes its CSVs)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import ModelCheckpoint

from tmc_lightning.utils import write_text_atomic


def checkpoint_callbacks(
    run_dir: Path, monitor: str, mode: str, save_top_k: int, save_last: bool
) -> list[L.Callback]:
    """The best checkpoint by ``monitor`` (first: ``trainer.checkpoint_callback``) and last.ckpt."""
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            filename="best-epoch{epoch:03d}-dice{val/dice:.4f}",
            auto_insert_metric_name=False,
        )
    ]
    if save_last:
        # last.ckpt after every epoch, from its own callback: a monitored checkpoint's
        # save_last (Lightning 2.6) writes it only when the best improves, so a resume would
        # rewind to the best epoch instead of continuing from the last one.
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="last",
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
            )
        )
    return callbacks


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient; the message says where and what to try."""


class FiniteCheck(L.Callback):
    """Stops training at the first non-finite training loss or gradient norm.

    It checks before the optimizer step, so no NaN ever reaches the weights: ``last.ckpt`` is
    then rewritten with the current (finite) weights, and :class:`NonFiniteError` ends the run.
    Under ``16-mixed`` the gradient scaler skips steps whose gradients overflow, which is not
    a failure; ``patience`` such steps in a row are.
    """

    def __init__(self, patience: int = 20) -> None:
        self.patience, self.bad_steps = patience, 0

    def _scaled(self, trainer: L.Trainer) -> bool:
        return str(trainer.precision) in ("16-mixed", "16")

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        # Under DDP one rank's loss may go bad alone; stopping it alone would hang the others
        # in the gradient all-reduce, so there the (all-reduced) gradient check decides.
        if trainer.world_size > 1 or torch.isfinite(loss).all():
            return
        parts = getattr(pl_module, "last_loss_parts", {})
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items()) or f"{float(loss)}"
        self._bad(trainer, pl_module, f"the training loss is not finite ({terms})")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        # One fused pass over every gradient (the grads of mixed dtypes are fine per tensor).
        norm = torch.linalg.vector_norm(
            torch.stack([n.float() for n in torch._foreach_norm(grads)])
        )
        if torch.isfinite(norm):
            self.bad_steps = 0
            return
        self._bad(trainer, pl_module, f"the gradient norm is not finite ({float(norm)})")

    def _bad(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        if self._scaled(trainer):
            self.bad_steps += 1  # the scaler skips this step and lowers its scale
            if self.bad_steps < self.patience:
                return
            what += f", for {self.bad_steps} steps in a row under 16-mixed"
        saved = self._save_last(trainer, pl_module)
        hp = pl_module.hparams
        raise NonFiniteError(
            f"stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): {what}. "
            f"{saved} Try a lower learning rate (optim.lr={hp.get('lr')}), "
            "trainer.precision=bf16-mixed instead of 16-mixed, or loss.align_weight=0 if only the "
            "align term is non-finite; callbacks.finite_check=false turns this check off."
        )

    def _save_last(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        if not all(torch.isfinite(p).all() for p in pl_module.parameters()):
            return "The weights are no longer finite, so last.ckpt was left as it was."
        last = next(
            (
                c
                for c in trainer.callbacks
                if isinstance(c, ModelCheckpoint) and c.filename == "last"
            ),
            None,
        )
        if last is None or last.dirpath is None:
            return ""
        path = Path(last.dirpath) / "last.ckpt"
        trainer.save_checkpoint(path)
        return f"{path} holds the last finite weights."


class PerImageRecorder(L.Callback):
    """Records each image's Dice and IoU, by name, while ``trainer.validate``/``test`` run.

    It reads the per-image values the module's ``PerImageDiceIoU`` (``metrics[<stage>_image]``)
    computed for the batch, so the scores equal the logged metric and cost no second pass.
    ``rows[stage]`` holds one ``{"name", "dice", "iou"}`` per image, in dataset order.
    """

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def _start(self, stage: str) -> None:
        self.rows[stage] = []

    def _batch_end(self, pl_module: L.LightningModule, batch: dict[str, Any], stage: str) -> None:
        scores = pl_module.metrics[f"{stage}_image"].last_scores
        if scores is None:
            return
        dice, iou = (s.tolist() for s in scores)
        for name, d, i in zip(batch["name"], dice, iou, strict=True):
            self.rows[stage].append({"name": name, "dice": d, "iou": i})

    def _end(self, trainer: L.Trainer, stage: str) -> None:
        if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return
        parts: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(parts, self.rows[stage])
        self.rows[stage] = merge_ranks(parts)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start("val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        self._batch_end(pl_module, batch, "val")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start("test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        self._batch_end(pl_module, batch, "test")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "test")


def merge_ranks(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-rank rows back in dataset order, each image once.

    The unshuffled DistributedSampler deals index k*W + r to rank r and pads the last round
    with repeats of the first indices.
    """
    merged: dict[str, dict[str, Any]] = {}
    for k in range(max((len(p) for p in parts), default=0)):
        for part in parts:
            if k < len(part):
                merged.setdefault(part[k]["name"], part[k])
    return list(merged.values())


def write_scores_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``name,dice,iou`` per image, written via a temporary file and a rename."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["name", "dice", "iou"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())
