"""Safe checkpoint loading: registered model names and plain values only, never an import path.

The checkpoint alone is enough: it holds the model's registry name and plain kwargs, the
DataModule's settings and its tokenizer.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from tmc_lightning.data.datamodule import DATAMODULES, TextSegDataModule
from tmc_lightning.models import list_models
from tmc_lightning.training.module import SegmentationModule


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
    except pickle.UnpicklingError as err:  # weights_only refused an object: never run it
        first = str(err).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"refusing checkpoint {path}: it cannot be loaded safely ({first})"
        ) from None
    except Exception as err:  # noqa: BLE001 - truncated, corrupt, or not a torch file at all
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch checkpoint (truncated or corrupt? "
            f"{first}); pass a .ckpt that tmc-train saved under <run>/checkpoints/"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        kind = "a plain state dict" if _is_state_dict(ckpt) else f"a {type(ckpt).__name__}"
        raise CheckpointError(
            f"checkpoint {path} holds {kind}, not a tmc-train checkpoint (no state_dict and "
            "hyper_parameters); pass a .ckpt that tmc-train saved under <run>/checkpoints/ "
            "(pretrained encoder weights go in vision_encoder.checkpoint or text_encoder.path)"
        )
    hp = ckpt["hyper_parameters"]
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
    kwargs = hp.get("model_kwargs")
    if name == "tmc" and isinstance(kwargs, dict) and "injection" not in kwargs:
        # Written before model.injection existed: its segmenter has the "full" layout.
        hp["model_kwargs"] = {**kwargs, "injection": "full"}
    return ckpt


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, torch.Tensor) for v in value.values())
    )


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
