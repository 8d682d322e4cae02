"""The LightningModule: losses, metrics and optimisation around a registered network."""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch

from tmc_lightning.losses import (
    alignment_on,
    multi_stage_alignment_loss,
    same_text_matrix,
    task_loss,
)
from tmc_lightning.metrics import GlobalDiceIoU, PerImageDiceIoU
from tmc_lightning.models import model_class
from tmc_lightning.models.attention import attention_kernel
from tmc_lightning.models.base import SegOutput
from tmc_lightning.training.schedule import make_scheduler
from tmc_lightning.training.settings import LossConfig, OptimConfig, PerfConfig

OPTIM, LOSS, PERF = OptimConfig(), LossConfig(), PerfConfig()  # the defaults, written once


class SegmentationModule(L.LightningModule):
    """Trains any registered network with ``BCE (+ Dice) + align_weight x L_align``.

    Hyper-parameters are plain values only (a registry name and keyword arguments), so a
    checkpoint reloads with ``load_from_checkpoint(path)`` alone and loads with
    ``weights_only=True``.
    """

    def __init__(
        self,
        model_name: str = "tmc",
        model_kwargs: dict[str, Any] | None = None,
        dice_weight: float = LOSS.dice_weight,
        align_weight: float = LOSS.align_weight,
        optimizer: str = OPTIM.name,
        lr: float = OPTIM.lr,
        weight_decay: float = OPTIM.weight_decay,
        scheduler: str = OPTIM.scheduler,
        warmup_epochs: int = OPTIM.warmup_epochs,
        max_epochs: int = 100,
        min_lr_ratio: float = OPTIM.min_lr_ratio,
        encoder_lr_ratio: float = OPTIM.encoder_lr_ratio,
        seed: int = 0,
        channels_last: bool = False,
        compile: bool = PERF.compile,
        sdpa: bool = PERF.sdpa,
    ) -> None:
        super().__init__()
        hparams = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        cls = model_class(model_name)
        config = cls.make_config(dict(model_kwargs or {}))
        if hasattr(config, "align"):
            # Alignment heads exist exactly when their loss has a weight, so none sits
            # untrained (docs/design.md §3). align=False (an ablation's "no alignment", or an
            # earlier version's checkpoint of one) means lambda = 0, and is recorded so.
            on = alignment_on(config.align, align_weight)
            config = dataclasses.replace(config, align=on)
            hparams["align_weight"] = align_weight if on else 0.0
        # sdpa=False writes every attention out as softmax(QK^T)V (a benchmark variant).
        with attention_kernel(sdpa):
            self.model = cls(config)
        # The checkpoint stores exactly what rebuilds this network offline: the resolved
        # config, with pretrained weights coming from the state dict instead of the hub.
        hparams["model_kwargs"] = self.model.checkpoint_kwargs()
        self.save_hyperparameters(hparams)
        if channels_last:
            # Only 4-D weights change layout; parameter names and values stay the same, so
            # checkpoints load into either layout.
            self.model.to(memory_format=torch.channels_last)
        # torch.compile'd forward_features, built on first use. A plain attribute, not a
        # submodule: the state dict keeps its keys (no "_orig_mod." prefix).
        self._compiled_features: Any = None
        # Fewer masks (training/semi.py): the unlabelled images' losses and state, a callback
        # set by the training factory; None trains on masks alone.
        self.semi: Any = None
        self.metrics = torch.nn.ModuleDict(
            {
                f"{s}_{kind}": cls()
                for s in ("val", "test")
                for kind, cls in (("image", PerImageDiceIoU), ("global", GlobalDiceIoU))
            }
        )

    def forward(self, image, input_ids=None, attention_mask=None) -> torch.Tensor:
        return self.features(image, input_ids, attention_mask).logits

    def features(self, image, input_ids=None, attention_mask=None) -> SegOutput:
        """The network's ``forward_features`` under the perf switches (channels_last, compile)."""
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        if not self.hparams.compile:
            return self.model.forward_features(image, input_ids, attention_mask)
        if self._compiled_features is None:
            self._compiled_features = torch.compile(self.model.forward_features)
        return self._compiled_features(image, input_ids, attention_mask)

    def _step(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        out = self.features(batch["image"], batch["input_ids"], batch["attention_mask"])
        losses = {"task": task_loss(out.logits, batch["mask"], self.hparams.dice_weight)}
        loss = losses["task"]
        if out.aux_logits and self.training:
            # Deep supervision: the aux heads together weigh as much as the final head (their
            # mean, so the weight does not grow with their number). Evaluation scores the
            # final head only.
            losses["aux"] = torch.stack(
                [task_loss(a, batch["mask"], self.hparams.dice_weight) for a in out.aux_logits]
            ).mean()
            loss = loss + losses["aux"]
        if out.align and self.hparams.align_weight > 0:
            losses["align"] = multi_stage_alignment_loss(
                out.align, same_text_matrix(batch["input_ids"])
            )
            loss = loss + self.hparams.align_weight * losses["align"]
        return loss, losses, out.logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.semi is not None:
            loss, parts = self.semi.training_loss(self, batch)
        else:
            loss, parts, _ = self._step(batch)
        self.last_loss_parts = {k: v.detach() for k, v in parts.items()}  # for FiniteCheck
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/loss_{k}", v, batch_size=bs)
        return loss

    def configure_callbacks(self) -> list[L.Callback]:
        trainer = self._trainer  # attached once: later validate/test calls keep it
        if self.semi is None or (trainer and any(c is self.semi for c in trainer.callbacks)):
            return []
        return [self.semi]

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        _, parts, logits = self._step(batch)
        bs = batch["image"].shape[0]
        # val/loss is the task loss alone, so it compares across models with and without
        # alignment heads; the alignment term has its own key.
        self.log(f"{stage}/loss", parts["task"], sync_dist=True, batch_size=bs)
        if "align" in parts:
            self.log(f"{stage}/loss_align", parts["align"], sync_dist=True, batch_size=bs)
        self.metrics[f"{stage}_image"].update(logits, batch["mask"])
        self.metrics[f"{stage}_global"].update(logits, batch["mask"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        for kind in ("image", "global"):
            metric = self.metrics[f"{stage}_{kind}"]
            for name, value in metric.compute().items():
                self.log(f"{stage}/{name}", value, prog_bar=name == "dice")
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        encoder = set()
        if hp.encoder_lr_ratio != 1.0:
            encoder = {id(p) for m in self.model.encoder_modules() for p in m.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        # Pretrained encoders fine-tune at a fraction of the decoder's rate
        # (optim.encoder_lr_ratio): at the full rate they soon lose what they learned.
        groups = [
            {"params": [p for p in trainable if id(p) not in encoder], "lr": hp.lr},
            {
                "params": [p for p in trainable if id(p) in encoder],
                "lr": hp.lr * hp.encoder_lr_ratio,
            },
        ]
        groups = [g for g in groups if g["params"]]
        params = [p for g in groups for p in g["params"]]
        # The fused kernel updates every tensor in one call: on the 2-core CPU it cut the
        # AdamW step of the small TMC from ~50 to ~15 ms and of the paper TMC from ~1.1 s to
        # ~0.2 s (one thread), against a per-tensor Python loop (torch's CPU default).
        # Not under 16-mixed: there Lightning clips before the scaler's step, and a fused
        # optimizer would unscale only inside it (Lightning refuses to clip it).
        fused = not self._grad_scaled() and all(
            p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
        )
        kw = {"weight_decay": hp.weight_decay, "fused": fused or None}
        if hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, **kw)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(groups, **kw)
        else:
            raise ValueError(f"optim.name={hp.optimizer!r} is not supported; use adam or adamw")
        # Per epoch over trainer.max_epochs, or per step through a budget (run.py sets
        # module.budget; training/schedule.py, training/budget.py).
        return make_scheduler(opt, hp, getattr(self, "budget", None))

    def _grad_scaled(self) -> bool:
        """True under fp16 mixed precision, where gradients pass through a GradScaler."""
        trainer = self._trainer
        return trainer is not None and str(trainer.precision) in ("16-mixed", "16")

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        # Lightning's mixed-precision plugin refuses to clip for a fused optimizer, in case it
        # unscales fp16 gradients only inside its step. Under bf16-mixed (no scaler) and fp32
        # the gradients here are the true ones, so clip them directly; that keeps the fused
        # AdamW on CPUs with bf16 (found on a Sapphire Rapids: every bf16 run failed here).
        if not gradient_clip_val or self._grad_scaled():
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val, foreach=True)
        else:
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val, foreach=True)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout and drop-path draws depend on (seed, epoch, batch, rank) only, so a run
        # resumed from last.ckpt trains exactly like an uninterrupted one, whatever consumed
        # the global generator in between (Lightning's restore path creates its data iterator
        # at a different moment than a fresh epoch does).
        key = (self.hparams.seed * 1_000_003 + self.current_epoch) * 100_003 + batch_idx
        torch.manual_seed((key * 101 + self.global_rank) % (2**63 - 1))
