"""Score a checkpoint on its dataset's splits: ``tmc-eval ckpt_path=...``.

The checkpoint alone is enough: it holds the model's registry name and plain kwargs, the
DataModule's settings and its tokenizer. Nothing is imported by path from the checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from tmc_lightning.data.datamodule import TextSegDataModule
from tmc_lightning.data.layouts import SplitAbsent
from tmc_lightning.data.text import encode
from tmc_lightning.evaluation.per_image import score_split, write_artifacts
from tmc_lightning.evaluation.text_modes import mode_summary, parse_modes, table, texts_for
from tmc_lightning.inference.checkpoint import load_datamodule, load_module
from tmc_lightning.metrics import DEFAULT_RESOLUTION, check_resolution
from tmc_lightning.utils import device_for, run_dir_of, write_json_atomic, write_text_atomic

log = logging.getLogger("tmc_lightning.evaluate")


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
    text_mode: str | list[str] = "given",
    generic_prompt: str | None = None,
    eval_resolution: str = DEFAULT_RESOLUTION,
) -> dict[str, Any]:
    """Metrics per split (JSON) and, with ``artifacts``, per-image CSV, overlays and bootstrap CIs.

    One pass over each split gives both the metrics and the per-image rows. ``text_mode``: the
    prompts (``given``; or several of given, empty, shuffled, generic, scored one after another
    into one table per split; ``generic_prompt`` defaults to the dataset's).
    ``eval_resolution``: ``original`` scores every mask at its file's own size (the logits
    upsampled as ``tmc-predict`` does; each split then also keeps its ``model_resolution``
    Dice/IoU), ``model`` at the model's input size (:mod:`~tmc_lightning.metrics`).
    """
    eval_resolution = check_resolution(eval_resolution)
    modes = parse_modes(text_mode)
    module, ckpt = load_module(ckpt_path)
    dm = load_datamodule(ckpt, data_root)
    generic_prompt = generic_prompt or dm.hparams.get("generic_prompt")
    if "generic" in modes:
        texts_for("generic", [], generic_prompt)  # no prompt: the error before any scoring
    device = device_for(accelerator)
    module.to(device)
    results: dict[str, Any] = {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "eval_resolution": eval_resolution,
    }
    splits = present_splits(dm, splits)
    # Artefacts go beside the JSON: <out without .json>/<split>/, or by default
    # <run>/eval_<checkpoint>/<split>/ beside the run's checkpoints/ folder.
    eval_base = (
        Path(out).with_suffix("") if out else run_dir_of(ckpt_path) / f"eval_{Path(ckpt_path).stem}"
    )
    for split in splits:
        dm.setup({"val": "validate", "test": "test"}[split])
        loader = {"val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
        rows, metrics = score_split(
            module, loader, device, precision, with_hd95=artifacts, resolution=eval_resolution
        )
        results[split] = metrics
        if len(modes) > 1:
            results.setdefault("text_modes", {})[split] = score_modes(
                module, dm, split, rows, modes, generic_prompt, device, precision, eval_resolution
            )
        if not artifacts:
            continue
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
    results["dataset"] = dm.identity()
    path = Path(out) if out else eval_base.parent / f"{eval_base.name}.json"  # names hold dots
    if "text_modes" in results:
        name = module.hparams.model_name
        md = "\n".join(table(s, m, name) for s, m in results["text_modes"].items())
        md_path = path.with_name(path.stem + "_text_modes.md")
        write_text_atomic(md_path, f"# Prompt robustness: {ckpt_path}\n\n{md}")
        print(md + f"table: {md_path}")
    results["model_image_size"] = int(dm.hparams.image_size)
    write_json_atomic(path, results)
    if eval_resolution == "original":  # both resolutions side by side, from the same pass
        md = resolution_table(results, splits, ckpt_path)
        md_path = path.with_name(path.stem + "_resolution.md")
        write_text_atomic(md_path, md)
        print(md + f"table: {md_path}")
    for split in splits:
        r = results[split]
        print(
            f"{split}/dice={r['dice']:.6f} {split}/dice_global={r['dice_global']:.6f}"
            f"  [eval_resolution={eval_resolution}]"
        )
    print(f"wrote {path}")
    return results


def resolution_table(results: dict[str, Any], splits: list[str], ckpt_path: str) -> str:
    """Markdown: each split's Dice/IoU under both protocols, at the masks' size and the model's."""
    size = results["model_image_size"]
    lines = [
        f"# Scores at the masks' own resolution and at the model's ({size} px): {ckpt_path}",
        "",
        "| split | resolution | per-image Dice | per-image IoU | global Dice | global IoU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for split in splits:
        r = results[split]
        for label, m in (
            ("original (each mask's own size)", r),
            (f"model ({size} px)", r["model_resolution"]),
        ):
            lines.append(
                f"| {split} | {label} | {m['dice']:.4f} | {m['iou']:.4f} | "
                f"{m['dice_global']:.4f} | {m['iou_global']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def mode_dataset(
    dm: TextSegDataModule, dataset: Any, mode: str, generic_prompt: str | None
) -> tuple[Any, dict[str, Any]]:
    """``dataset`` with the texts (and token ids) of ``mode``, and what to report about them."""
    texts, info = texts_for(mode, dataset.texts, generic_prompt)
    tokens = encode(dm.build_tokenizer(), texts, dm.hparams.max_words)
    return dataset.with_texts(texts, tokens), info


def score_modes(
    module: Any,
    dm: TextSegDataModule,
    split: str,
    given_rows: list[dict[str, Any]],
    modes: list[str],
    generic_prompt: str | None,
    device: torch.device,
    precision: str,
    resolution: str = "model",
) -> dict[str, dict[str, Any]]:
    """Each text mode's Dice on ``split``: the same images, only the prompts replaced."""
    dataset = dm.datasets[split]
    out: dict[str, dict[str, Any]] = {"given": mode_summary(given_rows)}
    for mode in modes[1:]:
        dm.datasets[split], info = mode_dataset(dm, dataset, mode, generic_prompt)
        try:
            loader = {"val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
            rows, _ = score_split(
                module, loader, device, precision, with_hd95=False, resolution=resolution
            )
        finally:
            dm.datasets[split] = dataset
        out[mode] = {**mode_summary(rows), **info}
        log.info("%s, text_mode=%s: Dice %.4f", split, mode, out[mode]["dice"])
    return out
