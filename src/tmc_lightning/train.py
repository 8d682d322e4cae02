"""Train (and test) a model: ``python -m tmc_lightning.train dataset=qata model=tmc``."""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from tmc_lightning.data.datamodule import TextSegDataModule, build_datamodule
from tmc_lightning.data.layouts import DataError
from tmc_lightning.models.encoders import text_settings
from tmc_lightning.models.hub import EncoderUnavailableError
from tmc_lightning.models.registry import model_class
from tmc_lightning.module import SegmentationModule
from tmc_lightning.per_image import PerImageRecorder, write_scores_csv
from tmc_lightning.tracking import finish_wandb, make_wandb_logger
from tmc_lightning.utils import CONF_DIR, git_commit, model_report, run_dir_of, write_json_atomic

log = logging.getLogger("tmc_lightning.train")
# Dataset-config keys that are training recipe, not DataModule arguments.
RECIPE_KEYS = ("name", "lr", "preset", "dice_weight", "align_weight")


def make_datamodule(dataset_cfg: dict[str, Any], tokenizer: str | None) -> TextSegDataModule:
    kwargs = {k: v for k, v in dataset_cfg.items() if k not in RECIPE_KEYS}
    if tokenizer is not None and not kwargs.get("tokenizer"):
        kwargs["tokenizer"] = tokenizer
    return build_datamodule(dataset_cfg["name"], **kwargs)


def make_module(cfg: DictConfig, dm: TextSegDataModule) -> SegmentationModule:
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    name = model_cfg.pop("name")
    if model_class(name).uses_text:
        model_cfg["vocab_size"] = dm.vocab_size
    if "align" in model_cfg and not cfg.loss.align_weight:
        model_cfg["align"] = False  # lambda = 0: no alignment heads at all (spec section 3)
    module = SegmentationModule(
        model_name=name,
        model_kwargs=model_cfg,
        dice_weight=cfg.loss.dice_weight,
        align_weight=cfg.loss.align_weight,
        optimizer=cfg.optim.name,
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        scheduler=cfg.optim.scheduler,
        warmup_epochs=cfg.optim.warmup_epochs,
        max_epochs=cfg.trainer.max_epochs,
        min_lr_ratio=cfg.optim.min_lr_ratio,
        seed=cfg.seed,
        # select(): a run resumed from a config saved before the perf section still loads
        channels_last=use_channels_last(cfg),
        compile=bool(OmegaConf.select(cfg, "perf.compile", default=False)),
        sdpa=bool(OmegaConf.select(cfg, "perf.sdpa", default=True)),
    )
    if hasattr(module.model, "checkpoint_kwargs"):
        # Store kwargs that rebuild the architecture offline; weights come from the state dict.
        module.hparams.model_kwargs = module.model.checkpoint_kwargs()
    return module


def use_channels_last(cfg: DictConfig) -> bool:
    """``perf.channels_last``: true, false, or auto (what tmc-bench measured as faster).

    auto: on GPUs, yes; on CPUs, yes for the narrow ``tiny``/``small`` presets and no for
    ``paper``, whose wide full-resolution convolutions ran faster in NCHW on the 2-core CPU
    (experiments/results/bench_cpu.md).
    """
    value = OmegaConf.select(cfg, "perf.channels_last", default=False)
    if str(value).lower() != "auto":
        return bool(value)
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return gpu or OmegaConf.select(cfg, "model.preset", default="small") != "paper"


def tokenizer_for(cfg: DictConfig) -> str | None:
    """A pretrained text encoder brings its own tokenizer; otherwise None (built from the data)."""
    name = cfg.model.name
    cls = model_class(name)
    if not cls.uses_text:
        return None
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    kwargs["text"] = text_settings(kwargs.pop("text_encoder", None), kwargs.get("text"))
    text = cls.resolve_text(kwargs)
    return text.get("name") if text.get("pretrained") else None


def make_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """Callbacks and loggers from config; a resumed run logs to a fresh ``logs-resumeN`` folder."""
    cb_cfg = cfg.callbacks
    ckpt = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        monitor=cb_cfg.checkpoint.monitor,
        mode=cb_cfg.checkpoint.mode,
        save_top_k=cb_cfg.checkpoint.save_top_k,
        filename="best-epoch{epoch:03d}-dice{val/dice:.4f}",
        auto_insert_metric_name=False,
    )
    callbacks: list[L.Callback] = [ckpt]  # first: trainer.checkpoint_callback is the best
    if cb_cfg.checkpoint.save_last:
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
    if cb_cfg.early_stopping:
        es = cb_cfg.early_stopping
        callbacks.append(EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience))
    if cb_cfg.rich_progress:
        callbacks.append(RichProgressBar())
    if cb_cfg.lr_monitor and cfg.logger.csv:  # the monitor needs a logger
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
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(cfg, run_dir)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _logs_to(path: Path) -> bool:
    """Whether a root-logger file handler already writes to ``path``."""
    target = str(path.resolve())
    return any(
        isinstance(h, logging.FileHandler) and h.baseFilename == target
        for h in logging.getLogger().handlers
    )


def _run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    start = time.time()

    dm = make_datamodule(OmegaConf.to_container(cfg.dataset, resolve=True), tokenizer_for(cfg))
    dm.prepare_data()
    # Load (and cache) the data before anything is written: a bad dataset fails here, with its
    # DataError, and leaves no half-made run folder (fit's own setup then reuses these splits).
    dm.setup("fit")
    has_test = bool(cfg.run_test) and dm.has_split("test")  # a broken test split fails now
    module = make_module(cfg, dm)
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

    trainer = make_trainer(cfg, run_dir)
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)
    results: dict[str, Any] = {
        "model": {"name": cfg.model.name, **report},
        "dataset": None,
        "git_commit": git_commit(),
        "seed": cfg.seed,
        "epochs_trained": trainer.current_epoch,
        "run_dir": str(run_dir),
    }
    if cfg.run_test and not trainer.fast_dev_run:
        ckpt = trainer.checkpoint_callback.best_model_path or "last"
        recorder = PerImageRecorder()  # per-image scores of this final scoring, for paired tests
        trainer.callbacks.append(recorder)
        val = trainer.validate(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
        results.update(best_checkpoint=ckpt, val=_strip(val, "val/"))
        if has_test:
            test = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
            results["test"] = _strip(test, "test/")
        else:
            log.warning(
                "dataset has no test split at %s: reporting validation only", dm.resolve_root()
            )
        if trainer.is_global_zero:
            for split, rows in recorder.rows.items():
                write_scores_csv(run_dir / f"per_image_{split}.csv", rows)
    results["dataset"] = dm.identity()
    results["wall_time_s"] = round(time.time() - start, 1)
    if not trainer.is_global_zero:
        return results
    write_json_atomic(run_dir / "metrics.json", results)
    finish_wandb(trainer.loggers, results)
    if "test" in results:
        log.info(
            "final val Dice %.4f | test Dice %.4f (per-image) | test Dice %.4f (global)",
            results["val"]["dice"],
            results["test"]["dice"],
            results["test"]["dice_global"],
        )
        print(
            f"val/dice={results['val']['dice']:.4f} test/dice={results['test']['dice']:.4f} "
            f"test/dice_global={results['test']['dice_global']:.4f}  run folder: {run_dir}"
        )
    return results


def _strip(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if k.startswith(prefix)}


def sweep_dirname(overrides: str, limit: int = 120) -> str:
    """A sweep job's folder name from its overrides: no '/', at most ``limit`` characters."""
    name = overrides.replace("/", "_") or "defaults"
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def resume_run_dir(ckpt_path: str | None, default: str) -> str:
    """``hydra.run.dir``: a resumed run's own folder (where ``run`` continues it), else ``default``.

    Hydra creates its run folder before ``main`` starts; pointing it at the original run keeps a
    resume from leaving an extra, nearly empty ``outputs/<now>/`` behind.
    """
    ckpt = Path(str(ckpt_path)) if ckpt_path else None
    if ckpt is None or not ckpt.is_file():  # a missing file: main() reports it before Hydra runs
        return default
    return str(run_dir_of(ckpt))


def hydra_subdir(ckpt_path: str | None, stamp: str) -> str:
    """``hydra.output_subdir``: a resume records its command beside the original ``.hydra/``."""
    return f".hydra-resume-{stamp}" if ckpt_path else ".hydra"


def or_default(value: Any, default: str) -> Any:
    """``${tmc_or:${key},default}``: unlike ``oc.select``, also falls back when the key is null."""
    return default if value is None or value == "" else value


OmegaConf.register_new_resolver("tmc_dirname", sweep_dirname, replace=True)
OmegaConf.register_new_resolver("tmc_or", or_default, replace=True)
OmegaConf.register_new_resolver("tmc_run_dir", resume_run_dir, replace=True)
OmegaConf.register_new_resolver("tmc_hydra_subdir", hydra_subdir, replace=True)


def missing_checkpoint(argv: list[str]) -> str | None:
    """The error for a ``ckpt_path=`` override naming no file, checked before Hydra makes folders."""
    if "-m" in argv or "--multirun" in argv:
        return None
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        value = value.strip("'\"")
        if key != "ckpt_path" or not sep or value in ("", "null"):
            continue
        if not Path(value).is_file():
            return (
                f"ckpt_path={value}: no such checkpoint file. To resume a run, pass its "
                "checkpoints/last.ckpt, e.g. "
                "ckpt_path=outputs/<dataset>/<model>/<date>/checkpoints/last.ckpt"
            )
    return None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    hc = hydra.core.hydra_config.HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        results = run(cfg, run_dir)
    except (DataError, EncoderUnavailableError) as err:  # bad data, or an encoder offline
        if not cfg.ckpt_path:
            remove_unused_run_dir(run_dir, hc.output_subdir, f"{hc.job.name}.log")
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return results.get("val", {}).get("dice")  # the value a Hydra sweeper optimises


def remove_unused_run_dir(run_dir: Path, hydra_subdir: str | None, log_name: str) -> None:
    """Remove what Hydra made for a run that failed (data, encoders) before writing anything.

    Only Hydra's record of the command and the job log are removed, then the folder if that
    left it empty: a ``hydra.run.dir`` that already held other files keeps them.
    """
    logging.shutdown()  # closes the job log's file handler
    if hydra_subdir:
        shutil.rmtree(run_dir / hydra_subdir, ignore_errors=True)
    (run_dir / log_name).unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty: files that were there before this run


def main() -> float | None:
    """``tmc-train``: Hydra's command line, after checking a resume's checkpoint exists."""
    error = missing_checkpoint(sys.argv[1:])
    if error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    return _hydra_main()


if __name__ == "__main__":
    main()
