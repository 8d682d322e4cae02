"""Semi-supervised training with fewer masks: a mean teacher, or EPI pseudo-labels + the LV loss.

``dataset.label_fraction`` (data/labels.py) hides the masks of most training images; ``semi=``
picks what the unlabelled images (image and text, no mask) teach:

- ``mean_teacher``: an exponential moving average of the student's weights (the teacher)
  predicts each unlabelled image under its weak view (the dataset's: a horizontal flip swaps
  "left" and "right" in the text too, when ``dataset.hflip`` is on); the student sees a strong
  view (a random affine warp, brightness/contrast and noise) and learns the teacher's
  prediction warped the same way: BCE on the teacher's confident pixels (``consistency=bce``)
  or the squared difference of probabilities (``mse``), weighted by a ramp-up.
- ``epi_lv``: after ``warmup_epochs`` on the labelled images alone, every unlabelled image gets
  a pseudo-label, its exponential pseudo-label iteration (EPI) average
  ``P_t = beta * P_{t-1} + (1 - beta) * prediction_t`` refreshed once per epoch (at its start,
  from the model as it is then, on the un-augmented image; the first refresh sets ``P_0``). The
  student learns ``P`` under the strong view (BCE + ``loss.dice_weight`` x soft Dice), plus
  ``lv_weight`` x the language-vision (LV) loss ``1 - cos(prediction, reference)``: the
  reference is the mean mask of the labelled images whose text is most similar to the image's
  own (cosine of TF-IDF token-count vectors of the texts), from a bank built from the labelled
  masks only. ``lv_weight=0`` turns it off (and must, for the image-only baselines).

Everything a resume needs (teacher weights, pseudo-labels and the epoch they were refreshed
for) is this callback's state in the checkpoint, so a killed run resumed from ``last.ckpt``
continues exactly. The network's own weights (the student) are all that evaluation and
prediction load: they need nothing of this.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from tmc_lightning.data.labels import LABELLED_LIST
from tmc_lightning.data.transforms import image_to_tensor
from tmc_lightning.errors import ConfigError
from tmc_lightning.training.semi_ops import (
    build_references,
    ema_update,
    epi_update,
    lv_loss,
    masked_task_loss,
    rampup,
    strong_view,
    take,
    warp,
)
from tmc_lightning.training.settings import section

METHODS = ("none", "mean_teacher", "epi_lv")


@dataclasses.dataclass
class SemiConfig:
    """``semi.*`` (conf/semi/<method>.yaml)."""

    method: str = "none"  # none | mean_teacher | epi_lv
    # Unlabelled images per step, beside dataset.batch_size labelled ones (None: as many).
    unlabelled_batch_size: int | None = None
    weight: float = 1.0  # the unlabelled loss's weight, reached after the ramp-up
    rampup_steps: int = 0  # exp(-5 (1 - t)^2) ramp of ``weight`` over these optimizer steps
    warmup_epochs: int = 0  # epochs on the labelled images alone
    strength: float = 1.0  # the student's strong view: rotation 10 deg, scale and light 0.1-0.15
    ema_decay: float = 0.99  # mean_teacher: teacher = decay x teacher + (1 - decay) x student
    consistency: str = "bce"  # mean_teacher: bce (confidence-masked, hard labels) | mse
    confidence: float = 0.7  # mean_teacher, bce: pixels whose teacher max(p, 1-p) reaches it
    beta: float = 0.99  # epi_lv: P_t = beta P_{t-1} + (1 - beta) prediction_t
    lv_weight: float = 0.1  # epi_lv: weight of the LV loss (0: off)
    lv_top_k: int = 1  # epi_lv: the reference averages the k most similar labelled texts' masks

    def check(self, uses_text: bool = True) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"semi.method={self.method!r}: use one of {', '.join(METHODS)}")
        if self.consistency not in ("bce", "mse"):
            raise ConfigError(f"semi.consistency={self.consistency!r}: use bce or mse")
        for key in ("ema_decay", "beta", "confidence"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"semi.{key}={getattr(self, key)}: use a value in [0, 1]")
        if self.unlabelled_batch_size is not None and self.unlabelled_batch_size < 1:
            raise ConfigError("semi.unlabelled_batch_size: use at least 1 (or null)")
        if self.lv_top_k < 1:
            raise ConfigError("semi.lv_top_k: use at least 1")
        if self.method == "epi_lv" and self.lv_weight > 0 and not uses_text:
            raise ConfigError(
                "semi=epi_lv: the LV loss reads each image's text, which this model does not "
                "use; add semi.lv_weight=0 for an image-only baseline"
            )


class SemiSupervision(L.Callback):
    """The unlabelled images' losses and state; the module calls :meth:`training_loss`.

    Attached by the training factory when ``dataset.label_fraction < 1`` or ``semi`` is on (the
    module returns it from ``configure_callbacks``). With ``semi=none`` it only writes the run
    folder's ``labelled.txt``.
    """

    def __init__(self, cfg: SemiConfig, seed: int = 0, dice_weight: float = 0.0) -> None:
        self.cfg, self.seed, self.dice_weight = cfg, seed, dice_weight
        self.teacher: torch.nn.Module | None = None
        self.pseudo: torch.Tensor | None = None  # (unlabelled, H, W) float32, index order
        self.pseudo_ready = False
        self.refreshed_epoch = -1  # the epoch whose start last refreshed the pseudo-labels
        self.ema_step = 0  # the optimizer step the teacher last followed
        self.refs: torch.Tensor | None = None
        self.ref_of: torch.Tensor | None = None
        self.row_of: torch.Tensor | None = None  # dataset index -> unlabelled row
        self._loaded: dict[str, Any] | None = None

    @property
    def on(self) -> bool:
        return self.cfg.method != "none"

    # -- setup and state ----------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm = trainer.datamodule
        names = getattr(dm, "labelled_names", None)
        if names is not None and trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / LABELLED_LIST
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{n}\n" for n in names))
        if not self.on:
            return
        ds = dm.datasets["train"]
        if ds.labelled is None:
            raise ConfigError(f"semi={self.cfg.method} needs dataset.label_fraction below 1")
        unl = np.flatnonzero(~ds.labelled)
        self.row_of = torch.full((len(ds.labelled),), -1, dtype=torch.long)
        self.row_of[torch.from_numpy(unl)] = torch.arange(len(unl))
        if self.cfg.method == "epi_lv":
            h, w = ds.images.shape[1:3]
            self.pseudo = torch.zeros(len(unl), h, w)
            if self.cfg.lv_weight > 0:
                self.refs, self.ref_of = build_references(
                    *ds.tokens, ds.masks, ds.labelled, self.cfg.lv_top_k
                )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.cfg.method == "mean_teacher":
            self.teacher = copy.deepcopy(pl_module.model).eval().requires_grad_(False)
        state, self._loaded = self._loaded, None
        if state is None:
            return
        if self.teacher is not None and "teacher" in state:
            self.teacher.load_state_dict(state["teacher"])
        if self.pseudo is not None and "pseudo" in state:
            if state["pseudo"].shape != self.pseudo.shape:
                raise ConfigError(
                    "the checkpoint's pseudo-labels do not fit this training split "
                    f"({tuple(state['pseudo'].shape)} vs {tuple(self.pseudo.shape)})"
                )
            self.pseudo.copy_(state["pseudo"])
        self.pseudo_ready = bool(state.get("pseudo_ready", False))
        self.refreshed_epoch = int(state.get("refreshed_epoch", -1))
        self.ema_step = int(state.get("ema_step", 0))

    def state_dict(self) -> dict[str, Any]:
        if not self.on:
            return {}
        out: dict[str, Any] = {
            "method": self.cfg.method,
            "pseudo_ready": self.pseudo_ready,
            "refreshed_epoch": self.refreshed_epoch,
            "ema_step": self.ema_step,
        }
        if self.teacher is not None:
            out["teacher"] = {k: v.detach().cpu() for k, v in self.teacher.state_dict().items()}
        if self.pseudo is not None:
            out["pseudo"] = self.pseudo.clone()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict) if state_dict else None  # applied in on_fit_start

    # -- per epoch and per step -----------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.cfg.method == "epi_lv" and epoch >= self.cfg.warmup_epochs:
            if self.refreshed_epoch < epoch:
                self.refresh(trainer, pl_module)
                self.refreshed_epoch = epoch

    def _update_teacher(self, module: L.LightningModule) -> None:
        """The EMA step for every optimizer step since the last, before the teacher predicts.

        Done lazily at the next training step rather than after the optimizer's: a checkpoint
        written between the two (Ctrl-C, an epoch's end) then holds a teacher that a resume
        brings to the very same state. The decay warms up as ``min(decay, 1 - 1/step)``.
        """
        step = module.global_step
        if self.teacher is not None and step > self.ema_step:
            decay = min(self.cfg.ema_decay, 1.0 - 1.0 / step)
            ema_update(self.teacher, module.model, decay)
            self.ema_step = step

    @torch.no_grad()
    def refresh(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One EPI step for every unlabelled image: the model's prediction on its plain view."""
        ds = trainer.datamodule.datasets["train"]
        unl = np.flatnonzero(~ds.labelled)
        bs = trainer.datamodule.hparams.get("eval_batch_size") or 16
        was_training = pl_module.training
        pl_module.eval()
        dev = pl_module.device
        try:
            for start in range(0, len(unl), bs):
                idx = unl[start : start + bs]
                image = torch.stack([image_to_tensor(np.asarray(ds.images[i])) for i in idx])
                ids, attn = ds.tokens[0][idx], ds.tokens[1][idx]
                with trainer.precision_plugin.forward_context():
                    logits = pl_module(image.to(dev), ids.to(dev), attn.to(dev))
                prob = torch.sigmoid(logits.float())[:, 0].cpu()
                rows = slice(start, start + len(idx))
                previous = self.pseudo[rows] if self.pseudo_ready else None
                self.pseudo[rows] = epi_update(previous, prob, self.cfg.beta)
        finally:
            pl_module.train(was_training)
        self.pseudo_ready = True

    def training_loss(
        self, module: L.LightningModule, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's loss and its parts: the supervised one on the labelled items, plus the
        unlabelled items' (weighted by the ramp-up) once the method is active."""
        if not self.on or "labelled" not in batch:
            loss, parts, _ = module._step(batch)
            return loss, parts
        lab = batch["labelled"].bool()
        self._update_teacher(module)  # follows the student through warm-up too
        loss, parts, _ = module._step(take(batch, lab))
        if module.current_epoch < self.cfg.warmup_epochs or bool(lab.all()):
            return loss, parts
        if self.cfg.method == "epi_lv" and not self.pseudo_ready:
            return loss, parts
        unl = take(batch, ~lab)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + module.global_step) % 2**63)
        view, theta, valid = strong_view(unl["image"], self.cfg.strength, g)
        ids, attn = unl["input_ids"], unl["attention_mask"]
        if self.cfg.method == "mean_teacher":
            with torch.no_grad():
                teacher = self.teacher.forward_features(unl["image"], ids, attn).logits
                target = warp(torch.sigmoid(teacher.float()), theta)
        else:
            rows = self.row_of[unl["index"].cpu()]
            target = self._flip(self.pseudo[rows], unl["flipped"]).to(view.device)
            target = warp(target[:, None], theta)
        logits = module.features(view, ids, attn).logits
        w = self.cfg.weight * rampup(module.global_step, self.cfg.rampup_steps)
        if self.cfg.method == "mean_teacher":
            parts["semi"] = self._consistency(logits, target, valid)
            unlabelled = parts["semi"]
        else:
            parts["semi"] = masked_task_loss(logits, target, valid, self.dice_weight)
            unlabelled = parts["semi"]
            if self.refs is not None:
                ref = self._flip(self.refs[self.ref_of[rows]], unl["flipped"])
                ref = warp(ref[:, None].to(view.device), theta) * valid
                parts["lv"] = lv_loss(torch.sigmoid(logits.float()) * valid, ref)
                unlabelled = unlabelled + self.cfg.lv_weight * parts["lv"]
        return loss + w * unlabelled, parts

    @staticmethod
    def _flip(maps: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        """Stored (original-frame) maps of a batch, mirrored where the dataset flipped the image."""
        f = flipped.cpu().bool()[:, None, None]
        return torch.where(f, maps.flip(-1), maps)

    def _consistency(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        if self.cfg.consistency == "mse":
            v = valid.float()
            return ((torch.sigmoid(logits.float()) - target) ** 2 * v).sum() / v.sum().clamp_min(1)
        keep = valid & (torch.maximum(target, 1 - target) >= self.cfg.confidence)
        hard = (target > 0.5).float()
        bce = F.binary_cross_entropy_with_logits(logits.float(), hard, reduction="none")
        return (bce * keep).sum() / keep.sum().clamp_min(1)


def make_semi(
    cfg: SemiConfig, label_fraction: float, seed: int, dice_weight: float, uses_text: bool
) -> SemiSupervision | None:
    """The run's :class:`SemiSupervision`, or None when every mask is kept and semi is off."""
    cfg.check(uses_text)
    if cfg.method == "none" and label_fraction >= 1.0:
        return None
    if cfg.method != "none" and label_fraction >= 1.0:
        raise ConfigError(
            f"semi={cfg.method} learns from images without masks: set dataset.label_fraction "
            "below 1 (e.g. 0.25)"
        )
    return SemiSupervision(cfg, seed=seed, dice_weight=dice_weight)


# -- the training factory's hooks ---------------------------------------------------------------
def semi_config(cfg: Any) -> SemiConfig:
    """``cfg.semi`` as a checked :class:`SemiConfig` (absent, e.g. an older run's: none)."""
    semi = section(cfg, "semi", SemiConfig)
    semi.check()
    return semi


def configure_datamodule(cfg: Any, dm: Any) -> None:
    """Semi-supervised methods keep the unlabelled images, ``unlabelled_batch_size`` a step."""
    semi = semi_config(cfg)
    if semi.method != "none":
        dm.unlabelled_batch_size = semi.unlabelled_batch_size or dm.hparams.batch_size


def attach(cfg: Any, module: L.LightningModule, uses_text: bool) -> None:
    """Sets ``module.semi`` (None when every mask is kept and ``semi=none``)."""
    from omegaconf import OmegaConf

    fraction = float(OmegaConf.select(cfg, "dataset.label_fraction", default=1.0))
    module.semi = make_semi(
        semi_config(cfg), fraction, int(cfg.seed), module.hparams.dice_weight, uses_text
    )
