"""Same-budget comparison on the embedded synthetic set: every registered model, small preset.

    python experiments/synthetic_benchmark/run.py [--models tmc lvit unet ...] [--epochs N] [-- extra overrides]

With ``--name NAME`` and dataset overrides it compares models on any dataset (see
experiments/qata_cpu/README.md); results go to experiments/results/NAME.md.

Trains each model with the same data, epochs, optimiser and seed (one after another, never in
parallel), reads each run's metrics.json and writes experiments/results/synthetic_benchmark.md
(+ .json). The set names target lesions in the text and adds identical-looking distractors, so
a text-free model cannot tell them apart: the image-only baselines are expected to stay well
below TMC and LViT.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "experiments" / "results"


def cpu_line() -> str:
    from tmc_lightning.utils import cpu_model

    model = cpu_model()
    import torch

    return (
        f"{model}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()})"
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    ap.add_argument(
        "--epochs", type=int, default=None, help="trainer.max_epochs (default: the config's)"
    )
    ap.add_argument(
        "--name", default="synthetic_benchmark", help="results file stem and run folder"
    )
    ap.add_argument("--out", default=None, help="run folders (default outputs/<name>)")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep a model's finished run folder (its metrics.json and timing.json) instead of "
        "training it again, e.g. after an interrupted benchmark",
    )
    ap.add_argument(
        "overrides",
        nargs="*",
        help="extra Hydra overrides for every run; MODEL:key=value applies to one model only",
    )
    args = ap.parse_args()
    if args.models is None:
        from tmc_lightning.models import list_models

        first = [m for m in ("tmc", "lvit", "unet") if m in list_models()]
        args.models = first + [m for m in list_models() if m not in first]
    return args


def check_stale(out_root: Path, models: list[str], reuse: bool) -> None:
    """Training into an old run folder would mix its checkpoints and logs with the new run."""
    stale = [
        out_root / m
        for m in models
        if (out_root / m).exists() and not (reuse and (out_root / m / "timing.json").is_file())
    ]
    if stale:
        raise SystemExit(
            f"run folder(s) {', '.join(map(str, stale))} already exist: move or delete them, "
            "or pass --reuse to keep finished runs"
        )


def train_or_reuse(
    args: argparse.Namespace, model: str, out_root: Path, common: list[str], per_model: dict
) -> dict:
    """Train ``model`` in its own process (or reuse its finished run); its row of the table."""
    run_dir = out_root / model
    cmd = [
        sys.executable,
        "-m",
        "tmc_lightning.train",
        f"model={model}",
        f"hydra.run.dir={run_dir}",
        "callbacks.rich_progress=false",
        *common,
        *per_model.get(model, []),
    ]
    if args.epochs:
        cmd.append(f"trainer.max_epochs={args.epochs}")
    timing_file = run_dir / "timing.json"
    if args.reuse and (run_dir / "metrics.json").is_file() and timing_file.is_file():
        print(f"reusing {run_dir}", flush=True)
        timing = json.loads(timing_file.read_text())
    else:
        print("+", " ".join(cmd[1:]), flush=True)
        start, cpu0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, cwd=REPO, check=True)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds (user + system) of the training process: unlike wall time, this
        # does not grow when other work shares the machine.
        cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        timing = {"wall_s": round(time.time() - start, 1), "cpu_s": round(cpu_s, 1)}
        timing_file.write_text(json.dumps(timing))
    m = json.loads((run_dir / "metrics.json").read_text())
    curve = val_curve(run_dir / "logs" / "metrics.csv", m["epochs_trained"])
    return {
        "model": model,
        **timing,
        "epochs": m["epochs_trained"],
        "params": m["model"]["params"],
        "gflops": m["model"]["gflops_per_image"],
        "val": m["val"],
        "test": m.get("test"),
        "dataset": m["dataset"],
        "precision": (m.get("precision") or {}).get("used", "unrecorded"),
        "val_curve": curve,
    }


def main() -> int:
    args = parse_args()
    common, per_model = split_overrides(args.overrides, args.models)
    out_root = Path(args.out) if args.out else REPO / "outputs" / args.name
    check_stale(out_root, args.models, args.reuse)
    rows = [train_or_reuse(args, m, out_root, common, per_model) for m in args.models]
    write_results(args, rows)
    return 0


def write_results(args: argparse.Namespace, rows: list[dict]) -> None:
    """``experiments/results/<name>.{json,md}``: the runs and a table of them."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    # --reuse changes no figure: the command that trains the runs is recorded without it.
    argv = [a for a in sys.argv[1:] if a != "--reuse"]
    command = "python experiments/synthetic_benchmark/run.py " + " ".join(argv)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"command": command, "machine": cpu_line(), "runs": rows}, indent=2)
    )
    split = "test" if all(r["test"] for r in rows) else "val"
    text_free = [r["model"] for r in rows if not uses_text(r["model"])]
    ds = rows[0]["dataset"]
    intro = (
        [
            "Test split of the embedded synthetic set (200 images, 128 px). Targets are named in the text;",
            "identical-looking distractors are not. A text-free model cannot tell them apart, so the",
            f"image-only baselines ({', '.join(text_free) or 'none here'}) are expected to stay low:",
            "that gap is what the set measures, not a flaw of those networks.",
        ]
        if ds["name"] == "synthetic"
        else [
            f"Dataset {ds['name']} at {ds['root']} (sizes {ds['sizes']}); scores on its {split} split."
        ]
    )
    lines = [
        f"# {args.name}: same budget per model",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {cpu_line()}",
        "",
        *intro,
        "",
    ]
    # With a test split, the val Dice (model selection) gets its own column; without one the
    # val split is the scored split and the column would only repeat it.
    val_col = split == "test"
    head = [f"{split} Dice", f"{split} IoU", f"{split} Dice (global)", f"{split} IoU (global)"]
    head += ["val Dice"] * val_col + [
        "params (M)",
        "GFLOPs/img",
        "precision",
        "epochs",
        "wall time",
        "CPU time",
    ]
    lines += ["| model | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for r in rows:
        t = r[split]
        cells = [r["model"]] + [f"{t[k]:.4f}" for k in ("dice", "iou", "dice_global", "iou_global")]
        cells += [f"{r['val']['dice']:.4f}"] * val_col
        cells += [
            f"{r['params'] / 1e6:.2f}",
            f"{r['gflops']:.2f}",
            r.get("precision", "unrecorded"),
            str(r["epochs"]),
            f"{r['wall_s'] / 60:.1f} min",
            f"{r['cpu_s'] / 60:.1f} CPU-min",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per-epoch validation Dice (per-image):", ""]
    for r in rows:
        lines.append(f"- {r['model']}: " + ", ".join(f"{d:.3f}" for d in r["val_curve"]))
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def uses_text(model: str) -> bool:
    from tmc_lightning.models.registry import model_class

    return bool(getattr(model_class(model), "uses_text", True))


def split_overrides(overrides: list[str], models: list[str]) -> tuple[list[str], dict]:
    """Split ``unet:trainer.max_epochs=10`` (one model) from plain overrides (every model)."""
    common: list[str] = []
    per_model: dict[str, list[str]] = {}
    for ov in overrides:
        key = ov.split("=", 1)[0]
        if ":" in key:
            model, rest = ov.split(":", 1)
            if model not in models:
                raise SystemExit(
                    f"override {ov!r} names model {model!r}, which is not in --models {models}"
                )
            per_model.setdefault(model, []).append(rest)
        else:
            common.append(ov)
    return common, per_model


def val_curve(csv_path: Path, epochs: int) -> list[float]:
    """Validation Dice per training epoch (the final re-validation of the best checkpoint dropped)."""
    import csv

    out = {}
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            if row.get("val/dice") and row.get("epoch") and not row.get("test/dice"):
                out[int(row["epoch"])] = float(row["val/dice"])
    return [out[k] for k in sorted(out) if k < epochs]


if __name__ == "__main__":
    raise SystemExit(main())
