"""What the unlabelled images learn from, scored against their hidden masks (issue 30's study).

    python experiments/qata_semi/targets.py outputs/qata_semi/epi-lv-seed2 \
        --out experiments/qata_semi/targets_epi-lv-seed2.json

With ``dataset.label_fraction=0.25`` training never reads the other 75% of the masks, but they
are on disk, so after a run the targets its unlabelled images were given can be scored against
them (at the training resolution, per image and over all pixels; an empty target on an empty
mask scores 1):

- ``pseudo``: EPI's pseudo-labels as the run's last checkpoint holds them (> 0.5);
- ``lv_reference``: the LV loss's reference masks, the mean mask of the labelled images whose
  text is most similar (> 0.5): the text's guess of where the lesion is;
- ``labelled_mean``: the mean of all labelled masks (> 0.5): a prior with no text and no image.

The run folder must hold ``config.yaml`` and ``checkpoints/last.ckpt`` of a ``semi=epi_lv`` run
(``pseudo`` is left out for a run without pseudo-labels). Needs the run's dataset root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from tmc_lightning.metrics import GlobalDiceIoU, per_image_scores
from tmc_lightning.training.factory import make_datamodule
from tmc_lightning.training.semi import semi_config
from tmc_lightning.training.semi_ops import build_references
from tmc_lightning.utils import provenance, write_json_atomic


def scores(prob: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Per-image mean Dice and global Dice of ``prob > 0.5`` against ``masks`` (N, H, W)."""
    logits = (prob - 0.5)[:, None]  # > 0 where prob > 0.5: the suite's own threshold
    target = masks[:, None].float()
    dice, _ = per_image_scores(logits, target)
    overall = GlobalDiceIoU()
    overall.update(logits, target)
    return {
        "dice": float(dice.mean()),
        "dice_global": float(overall.compute()["dice_global"]),
        "foreground": float((prob > 0.5).float().mean()),
    }


def pseudo_labels(run: Path) -> torch.Tensor | None:
    ckpt = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    for state in ckpt.get("callbacks", {}).values():
        if isinstance(state, dict) and "pseudo" in state:
            return state["pseudo"] if state.get("pseudo_ready") else None
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a semi=epi_lv run folder")
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    for need in ("config.yaml", "checkpoints/last.ckpt"):
        if not (args.run / need).is_file():
            sys.exit(f"error: {args.run / need} not found: pass a finished semi=epi_lv run folder")
    cfg = OmegaConf.load(args.run / "config.yaml")
    semi = semi_config(cfg)
    if semi.method != "epi_lv":
        sys.exit(f"error: {args.run} ran semi={semi.method}: this scores EPI's targets")
    dm = make_datamodule(cfg)
    dm.setup("fit")
    ds = dm.datasets["train"]
    unl = np.flatnonzero(~ds.labelled)
    masks = torch.from_numpy((np.asarray(ds.masks[unl]) > 0).astype(np.float32))
    lab_masks = (np.asarray(ds.masks[np.flatnonzero(ds.labelled)]) > 0).astype(np.float32)
    refs, ref_of = build_references(*ds.tokens, ds.masks, ds.labelled, semi.lv_top_k)
    got = {
        "lv_reference": scores(refs[ref_of], masks),
        "labelled_mean": scores(torch.from_numpy(lab_masks.mean(0)).expand_as(masks), masks),
    }
    pseudo = pseudo_labels(args.run)
    if pseudo is not None:
        if pseudo.shape != masks.shape:
            sys.exit(f"error: the checkpoint's pseudo-labels {tuple(pseudo.shape)} do not fit "
                     f"this split's unlabelled masks {tuple(masks.shape)}")  # fmt: skip
        got = {"pseudo": scores(pseudo, masks), **got}
    result = {
        "run": str(args.run),
        "unlabelled": len(unl),
        "labelled": int(ds.labelled.sum()),
        "resolution": list(masks.shape[1:]),
        "lesion_foreground": float(masks.mean()),
        "targets": got,
        "provenance": provenance(),
    }
    for name, s in got.items():
        print(f"{name:14s} Dice {100 * s['dice']:6.2f}  global {100 * s['dice_global']:6.2f}")
    if args.out:
        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
