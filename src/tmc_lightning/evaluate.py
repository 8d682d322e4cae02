"""Score a checkpoint on its dataset's splits: ``python -m tmc_lightning.evaluate ckpt_path=...``.

The checkpoint alone is enough: it holds the model's registry name and plain kwargs, the
DataModule's settings and its tokenizer. Nothing is imported by path from the checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from tmc_lightning.data.datamodule import DATAMODULES, TextSegDataModule
from tmc_lightning.data.layouts import SplitAbsent
from tmc_lightning.models.registry import list_models
from tmc_lightning.module import SegmentationModule
from tmc_lightning.utils import CONF_DIR, run_dir_of, write_json_atomic

log = logging.getLogger("tmc_lightning.evaluate")


class CheckpointError(ValueError):
    """A checkpoint is unreadable, unsafe or lacks what evaluation needs."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` and check that the model is a registered name."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass ckpt_path=<run>/checkpoints/<file>.ckpt"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "refuse"
        raise CheckpointError(
            f"refusing checkpoint {path}: it cannot be loaded safely ({err})"
        ) from None
    hp = ckpt.get("hyper_parameters", {})
    if _names_import_path(hp):
        raise CheckpointError(
            f"refusing checkpoint {path}: its hyper-parameters name an import path (_target_); "
            "tmc-lightning checkpoints hold only a registry name and plain keyword arguments"
        )
    name = hp.get("model_name")
    if name not in list_models():
        raise CheckpointError(
            f"checkpoint {path} names model {name!r}, which is not registered "
            f"(known: {list_models()}); only registry names are accepted"
        )
    return ckpt


def _names_import_path(value: Any) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_names_import_path(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_names_import_path(v) for v in value)
    return False


def load_module(path: str | Path) -> tuple[SegmentationModule, dict[str, Any]]:
    ckpt = read_checkpoint(path)
    # A run trained with perf.compile=true would otherwise spend minutes compiling to score
    # or predict a few images; eager mode gives the same outputs.
    module = SegmentationModule(**{**ckpt["hyper_parameters"], "compile": False})
    module.load_state_dict(ckpt["state_dict"])
    return module.eval(), ckpt


def load_datamodule(ckpt: dict[str, Any], data_root: str | None = None) -> TextSegDataModule:
    """Rebuild the training run's DataModule (settings and tokenizer) from a checkpoint."""
    for cls in DATAMODULES.values():
        if cls.__qualname__ in ckpt:
            kwargs = dict(ckpt.get("datamodule_hyper_parameters", {}))
            if data_root:
                kwargs["root"] = data_root
            dm = cls(**kwargs)
            dm.load_state_dict(ckpt[cls.__qualname__])
            return dm
    raise CheckpointError("checkpoint holds no DataModule state (was it written by tmc-train?)")


def present_splits(dm: TextSegDataModule, splits: list[str]) -> list[str]:
    """The requested splits the data has; an absent one is skipped with a warning, unless all are.

    QaTa's public release, e.g., has no test split: the default ``splits=[val, test]`` then
    scores val alone, as training does.
    """
    for split in splits:
        if split not in ("val", "test"):
            raise ValueError(f"splits: {split!r} is not one of val, test")
    present, errors = [], []
    for split in splits:
        try:
            dm.read_split(split)
        except SplitAbsent as err:
            errors.append(err)
            log.warning("skipping split %s: %s", split, err)
        else:
            present.append(split)
    if not present:
        raise errors[0]
    return present


def evaluate(
    ckpt_path: str,
    splits: list[str],
    out: str | None = None,
    data_root: str | None = None,
    accelerator: str = "cpu",
    precision: str = "32-true",
    artifacts: bool = True,
    top_k: int = 4,
) -> dict[str, Any]:
    """Metrics per split (JSON) and, with ``artifacts``, per-image CSV, overlays and bootstrap CIs."""
    module, ckpt = load_module(ckpt_path)
    dm = load_datamodule(ckpt, data_root)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    results: dict[str, Any] = {"checkpoint": str(Path(ckpt_path).resolve())}
    splits = present_splits(dm, splits)
    for split in splits:
        run = {"val": trainer.validate, "test": trainer.test}[split]
        metrics = run(module, datamodule=dm, verbose=False)[0]
        results[split] = {
            k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith(f"{split}/")
        }
    results["dataset"] = dm.identity()
    eval_base = run_dir_of(ckpt_path) / f"eval_{Path(ckpt_path).stem}"  # beside checkpoints/
    if artifacts:
        from tmc_lightning.per_image import score_split, write_artifacts

        for split in splits:
            loader = {"val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
            rows = score_split(module, loader, dm.datasets[split])
            summary = write_artifacts(rows, dm.datasets[split], eval_base / split, k=top_k)
            results[split]["per_image_summary"] = summary
            print(
                f"{split}: Dice {summary['dice']:.4f} (95% CI {summary['dice_ci95'][0]:.4f}-"
                f"{summary['dice_ci95'][1]:.4f}); per-image CSV and overlays in {eval_base / split}"
            )
            print(
                f"{split}: Dice by lesion size (share of the image): "
                + ", ".join(
                    f"{b['coverage']} {b['dice']:.3f} (n={b['n']})"
                    for b in summary["dice_by_lesion_size"]
                )
            )
    path = Path(out) if out else eval_base.parent / f"{eval_base.name}.json"  # names hold dots
    write_json_atomic(path, results)
    for split in splits:
        print(
            f"{split}/dice={results[split]['dice']:.6f} {split}/dice_global={results[split]['dice_global']:.6f}"
        )
    print(f"wrote {path}")
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(
        cfg.ckpt_path,
        list(cfg.splits),
        cfg.out,
        cfg.data_root,
        cfg.accelerator,
        cfg.precision,
        cfg.artifacts,
        cfg.top_k,
    )


if __name__ == "__main__":
    main()
