"""``tmc-export nnunet dataset=qata out=/path/to/nnUNet_raw``: a dataset as nnU-Net v2 raw data."""

from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from tmc_lightning.data.datamodule import datamodule_from_config
from tmc_lightning.data.layouts import DataError
from tmc_lightning.export.nnunet import export_nnunet
from tmc_lightning.utils import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    try:
        dm = datamodule_from_config(OmegaConf.to_container(cfg.dataset, resolve=True))
        if hasattr(dm, "prepare_data"):
            dm.prepare_data()
        target = export_nnunet(
            dm,
            cfg.out,
            dataset_id=cfg.dataset_id,
            dataset_name=str(cfg.dataset_name),
            channel_name=cfg.channel_name,
            overwrite=cfg.overwrite,
            workers=cfg.workers,
        )
    except (DataError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    info = json.loads((target / "dataset.json").read_text())
    n_test = len(list((target / "imagesTs").glob("*.png")))
    print(f"wrote {target}: {info['numTraining']} training cases, {n_test} in imagesTs")
    print(f"next: nnUNetv2_plan_and_preprocess -d {int(cfg.dataset_id)} --verify_dataset_integrity")
    print(f"      nnUNetv2_train {int(cfg.dataset_id)} 2d 0   # fold 0 = our train/val split")


def cli() -> None:
    """``tmc-export nnunet [overrides]``."""
    if len(sys.argv) < 2 or sys.argv[1] != "nnunet":
        print(
            "usage: tmc-export nnunet dataset=<name> [dataset.root=...] out=/path/to/nnUNet_raw "
            "[dataset_id=501] [overwrite=true]",
            file=sys.stderr,
        )
        sys.exit(2)
    del sys.argv[1]
    main()
