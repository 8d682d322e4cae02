"""One training run: fit, then score the best checkpoint on val (and test), and record it all."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from tmc_lightning.data.datamodule import TextSegDataModule
from tmc_lightning.evaluation.per_image import score_split
from tmc_lightning.metrics import DEFAULT_RESOLUTION, check_resolution
from tmc_lightning.training.allocator import set_up_memory
from tmc_lightning.training.budget import Budget
from tmc_lightning.training.callbacks import (
    FiniteCheck,
    NonFiniteError,
    PerImageRecorder,
    checkpoint_callbacks,
    write_scores_csv,
)
from tmc_lightning.training.factory import check_config, make_datamodule, make_module
from tmc_lightning.training.interrupt import GracefulInterrupt
from tmc_lightning.training.precision import choose_for_run, choose_precision
from tmc_lightning.training.settings import PerfConfig, section
from tmc_lightning.training.tracking import finish_wandb, make_wandb_logger
from tmc_lightning.utils import AUTOCAST, git_commit, model_report, run_dir_of, write_json_atomic

log = logging.getLogger("tmc_lightning.train")


def make_trainer(
    cfg: DictConfig, run_dir: Path, precision: str | None = None, budget: Budget | None = None
) -> L.Trainer:
    """Callbacks and loggers from config; a resumed run logs to a fresh ``logs-resumeN`` folder.

    ``precision`` is the resolved ``trainer.precision`` (``auto`` chosen by the hardware);
    ``budget`` (the module's too: ``module.budget``) ends the run and decides validation.
    """
    cb = cfg.callbacks
    ck = cb.checkpoint
    callbacks = checkpoint_callbacks(run_dir, ck.monitor, ck.mode, ck.save_top_k, ck.save_last)
    if ck.save_last:  # Ctrl-C / SIGTERM: last.ckpt at the current step, then a clean exit
        callbacks.append(GracefulInterrupt(run_dir / "checkpoints" / "last.ckpt"))
    if cb.get("finite_check", True):
        callbacks.append(FiniteCheck(patience=cb.get("finite_check_patience", 20)))
    if cb.early_stopping:
        es = cb.early_stopping
        callbacks.append(EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience))
    if cb.rich_progress:
        callbacks.append(RichProgressBar())
    if cb.lr_monitor and cfg.logger.csv:  # the monitor needs a logger
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    version = "logs"
    if cfg.ckpt_path:  # keep the interrupted run's logs
        version = next(
            f"logs-resume{i}" for i in range(1, 1000) if not (run_dir / f"logs-resume{i}").exists()
        )
    loggers: list[Logger] = []
    if cfg.logger.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="", version=version))
    if cfg.logger.get("wandb"):
        loggers.append(make_wandb_logger(cfg, run_dir, version))
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if precision is None:
        precision, _ = choose_precision(trainer_kwargs.get("precision", "32-true"), _accel(cfg))
    trainer_kwargs["precision"] = precision
    if budget is not None:
        callbacks.append(budget)
        budget.trainer_kwargs(trainer_kwargs)
    return L.Trainer(
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        logger=loggers or False,
        **trainer_kwargs,
    )


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit, then score the best checkpoint on val and test; returns what metrics.json holds."""
    handler = None
    if cfg.ckpt_path:  # resuming: continue in the original run folder, with its saved config
        ckpt_path = str(cfg.ckpt_path)
        run_dir = run_dir_of(ckpt_path)
        saved = run_dir / "config.yaml"
        if saved.is_file():
            cfg = OmegaConf.load(saved)
            cfg.ckpt_path = ckpt_path
        if not _logs_to(run_dir / "train.log"):  # Hydra's job log already appends there
            handler = logging.FileHandler(run_dir / "train.log")
            logging.getLogger().addHandler(handler)
        log.info("resuming %s with the run's saved config %s", ckpt_path, saved)
    try:
        return _run(cfg, run_dir)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _accel(cfg: DictConfig) -> str:
    return str(cfg.trainer.get("accelerator", "auto"))


def _logs_to(path: Path) -> bool:
    """Whether a root-logger file handler already writes to ``path``."""
    target = str(path.resolve())
    return any(
        isinstance(h, logging.FileHandler) and h.baseFilename == target
        for h in logging.getLogger().handlers
    )


def prepare(cfg: DictConfig) -> tuple[TextSegDataModule, bool]:
    """Load the data before anything is written.

    A bad dataset or an encoder offline fails here with its one error, and leaves no half-made
    run folder (fit's own setup then reuses these splits).
    """
    dm = make_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    has_test = bool(cfg.run_test) and dm.has_split("test")  # a broken test split fails now
    return dm, has_test


def _run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    check_config(cfg)  # first: a typo is the whole message, before any other output
    # the final scores' pixels (a run saved before the key existed gets the default)
    resolution = check_resolution(cfg.get("eval_resolution", DEFAULT_RESOLUTION))
    allocator = set_up_memory(
        section(cfg, "perf", PerfConfig).keep_freed_memory,
        "glibc defaults (perf.keep_freed_memory=false)",
    )
    log.info("allocator: %s", allocator)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    start = time.time()
    dm, has_test = prepare(cfg)
    module = make_module(cfg, dm)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # under DDP every rank runs this function; one writes
        (run_dir / "tokenizer.json").write_text(dm.build_tokenizer().to_str())
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    report = model_report(module.model, cfg.dataset.image_size, cfg.max_words)
    log.info(
        "model %s: %.2fM parameters (%.2fM trainable), %.2f GFLOPs per image (forward)",
        cfg.model.name,
        report["params"] / 1e6,
        report["trainable_params"] / 1e6,
        report["gflops_per_image"],
    )
    requested = str(cfg.trainer.get("precision", "32-true"))
    choice = choose_for_run(cfg, module, dm)  # auto on a CPU: measured (precision.py)
    precision, why = choice.used, choice.reason
    log.info("precision %s (trainer.precision=%s): %s", precision, requested, why)
    budget = Budget.from_config(cfg)  # None: the schedule runs per epoch (budget.py)
    module.budget = budget
    trainer = make_trainer(cfg, run_dir, precision, budget)
    results: dict[str, Any] = {
        "model": {"name": cfg.model.name, **report},
        "precision": {"requested": requested, **choice.record()},
        "allocator": allocator,
        "dataset": None,
        "git_commit": git_commit(),
        "seed": cfg.seed,
        "epochs_trained": 0,
        "run_dir": str(run_dir),
    }
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)
    except NonFiniteError as err:  # recorded, then reported by the command line
        results.update(epochs_trained=trainer.current_epoch, failed=str(err))
        if budget is not None:
            results["budget"] = budget.record()
        results["wall_time_s"] = round(time.time() - start, 1)
        if trainer.is_global_zero:
            write_json_atomic(run_dir / "metrics.json", results)
        raise
    results["epochs_trained"] = trainer.current_epoch
    if budget is not None:
        results["budget"] = budget.record()
    stopper = next((c for c in trainer.callbacks if isinstance(c, GracefulInterrupt)), None)
    if stopper is not None and stopper.received:  # the signal came during the last validation
        stopper.stop(trainer)
    if cfg.run_test and not trainer.fast_dev_run:
        results.update(score_best(trainer, module, dm, has_test, run_dir, resolution))
    results["dataset"] = dm.identity()
    results["wall_time_s"] = round(time.time() - start, 1)
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "metrics.json", results)
        finish_wandb(trainer.loggers, results)
        _print_final(results, run_dir)
    return results


def score_best(
    trainer: L.Trainer,
    module: L.LightningModule,
    dm: TextSegDataModule,
    has_test: bool,
    run_dir: Path,
    resolution: str = "model",
) -> dict[str, Any]:
    """Val (and test) metrics of the best checkpoint, with per-image CSVs for paired tests.

    ``resolution=original``: Dice/IoU (and the per-image CSVs) with each mask at its own size,
    from one more pass over each split on rank zero; the trainer's model-size figures stay
    beside them under ``model_resolution`` (``loss`` is the model-size training loss).
    """
    ckpt = trainer.checkpoint_callback.best_model_path or "last"
    recorder = PerImageRecorder()  # per-image scores of this final scoring, no second pass
    trainer.callbacks.append(recorder)
    val = trainer.validate(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    out: dict[str, Any] = {"best_checkpoint": ckpt, "val": _strip(val, "val/")}
    if has_test:
        test = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
        out["test"] = _strip(test, "test/")
    else:
        log.warning("dataset has no test split at %s: reporting validation only", dm.resolve_root())
    out["eval_resolution"] = resolution
    per_image = recorder.rows
    if resolution == "original" and trainer.is_global_zero:
        per_image = {}
        for split in [s for s in ("val", "test") if s in out]:
            out[split], per_image[split] = at_original_size(
                module, dm, split, out[split], str(trainer.precision)
            )
    if trainer.is_global_zero:
        for split, rows in per_image.items():
            write_scores_csv(run_dir / f"per_image_{split}.csv", rows)
    return out


def at_original_size(
    module: L.LightningModule,
    dm: TextSegDataModule,
    split: str,
    logged: dict[str, float],
    precision: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``split``'s scores with each mask at its own size, and their per-image rows.

    The scorer of ``tmc-eval`` over an unshuffled, unsharded loader of the split; ``logged``
    (the trainer's model-size scores) is kept under ``model_resolution``.
    """
    hp = dm.hparams
    loader = DataLoader(dm.datasets[split], batch_size=hp.eval_batch_size or hp.batch_size)
    training = module.training
    module.eval()
    try:
        rows, scores = score_split(
            module,
            loader,
            module.device,
            precision if precision in AUTOCAST else "32-true",
            with_hd95=False,
            resolution="original",
        )
    finally:
        module.train(training)
    keys = ("dice", "iou", "dice_global", "iou_global")
    return {
        **logged,
        **{k: scores[k] for k in keys},
        "model_resolution": {k: logged[k] for k in keys if k in logged},
    }, rows


def _print_final(results: dict[str, Any], run_dir: Path) -> None:
    if "test" not in results:
        return
    val, test = results["val"], results["test"]
    log.info(
        "final val Dice %.4f | test Dice %.4f (per-image) | test Dice %.4f (global)",
        val["dice"],
        test["dice"],
        test["dice_global"],
    )
    print(
        f"val/dice={val['dice']:.4f} test/dice={test['dice']:.4f} "
        f"test/dice_global={test['dice_global']:.4f}  run folder: {run_dir}"
    )


def _strip(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if k.startswith(prefix)}
