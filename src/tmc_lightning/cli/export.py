"""``tmc-export nnunet|onnx``: a dataset as nnU-Net v2 raw data, or a checkpoint as ONNX.

tmc-export nnunet dataset=qata dataset.root=... out=/path/to/nnUNet_raw
tmc-export onnx ckpt_path=.../best.ckpt out=model.onnx [opset=18] [check=true]
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig, OmegaConf

from tmc_lightning.cli.common import dispatch, one_line_errors
from tmc_lightning.data.datamodule import datamodule_from_config
from tmc_lightning.errors import ConfigError
from tmc_lightning.export.nnunet import export_nnunet
from tmc_lightning.export.onnx import export_onnx
from tmc_lightning.utils import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
@one_line_errors
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
    except (FileExistsError, ValueError) as err:  # an existing target, a bad dataset id
        raise ConfigError(str(err)) from None
    info = json.loads((target / "dataset.json").read_text())
    n_test = len(list((target / "imagesTs").glob("*.png")))
    print(f"wrote {target}: {info['numTraining']} training cases, {n_test} in imagesTs")
    print(f"next: nnUNetv2_plan_and_preprocess -d {int(cfg.dataset_id)} --verify_dataset_integrity")
    print(f"      nnUNetv2_train {int(cfg.dataset_id)} 2d 0   # fold 0 = our train/val split")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export_onnx")
@one_line_errors
def onnx_main(cfg: DictConfig) -> None:
    info = export_onnx(cfg.ckpt_path, cfg.out, int(cfg.opset), bool(cfg.check), cfg.threshold)
    line = f"wrote {cfg.out} ({info['model']}, opset {info['opset']}) and its notes"
    if "parity" in info:
        par = info["parity"]
        line += (
            f"; ONNX Runtime vs PyTorch on {par['batch']} images: max |logit diff| "
            f"{par['max_abs_logit_diff']:.2e}, masks differ on {100 * par['mask_disagreement']:.4f}% of pixels"
        )
    print(line)


USAGE = (
    "usage: tmc-export nnunet dataset=<name> [dataset.root=...] out=/path/to/nnUNet_raw "
    "[dataset_id=501] [overwrite=true]\n"
    "       tmc-export onnx ckpt_path=<checkpoint> out=model.onnx [opset=18] [check=true]"
)


def cli() -> None:
    """``tmc-export nnunet|onnx [overrides]``."""
    dispatch({"nnunet": main, "onnx": onnx_main}, USAGE)
