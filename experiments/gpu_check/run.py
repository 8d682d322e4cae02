"""The GPU check: one script for a bare GPU machine with no network (one H200 here).

    python experiments/gpu_check/run.py                  # on the GPU machine, ~6 minutes
    python experiments/gpu_check/run.py --device cpu     # dry run with tiny sizes, anywhere

Before it can run on a machine without network, fetch what it needs once, here:

    python experiments/gpu_check/prepare.py               # .whl/ (wheels) + experiments/gpu_check/data/

The machine it is written for has Python 3.12 with torch, lightning, timm, transformers and
torchmetrics, but not hydra-core, omegaconf or pytest (nor albumentations, wandb or monai,
which this check does not use: it trains without augmentation and logs to CSV). Steps:

1. versions of everything it uses, and which are missing; the missing ones are installed from
   ``.whl/`` (``pip install --no-index --no-deps``); the package itself runs from ``src/``;
2. the GPU-marked tests (``tests/gpu``: bf16-mixed, 16-mixed, auto and DDP on one device);
3. ``tmc-bench`` for TMC and LViT ``paper`` at batch 8, 224 px, fp32 and bf16: images/s,
   peak memory and achieved TFLOP/s against a bf16 matmul timed in the same run;
4. a short bf16 training of TMC ``paper`` (random encoders: no hub here) on the QaTa subset,
   with its val Dice.

Each step prints PASS/FAIL with its reason and goes on; the summary goes to
``experiments/gpu_check/bench_gpu.md`` (``--out``). Exit code 1 if any step failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / ".whl"
DATA = REPO / "experiments" / "gpu_check" / "data" / "QaTa-COV19"
USED = ("torch", "lightning", "timm", "transformers", "torchmetrics", "tokenizers", "numpy",
        "pandas", "scipy", "PIL", "matplotlib", "yaml", "hydra", "omegaconf", "pytest")  # fmt: skip
# A missing module -> the wheels (name prefixes in .whl/) it needs. Only those are installed, so
# a library the machine already has (its own pytest and plugins, say) is never shadowed.
INSTALLABLE = {
    "hydra": ("hydra_core", "omegaconf", "antlr4_python3_runtime"),
    "omegaconf": ("omegaconf", "antlr4_python3_runtime"),
    "pytest": ("pytest", "pluggy", "iniconfig"),
}
# Installed with --target, not into the interpreter's site-packages: the machine's Python may
# not be writable, and nothing there is changed.
SITE = Path(tempfile.gettempdir()) / "tmc_gpu_check_site"


def version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - absent or broken is the same here
        return None
    return str(getattr(mod, "__version__", "?"))


def import_error(module: str) -> str:
    """Why ``module`` does not import (a missing dependency of an installed wheel, say)."""
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - reported, not handled
        return f"{type(e).__name__}: {e}"
    return "imports"


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = (
        os.pathsep.join(str(p) for p in (REPO / "src", REPO, SITE))
        + os.pathsep
        + out.get("PYTHONPATH", "")
    )
    out.update(WANDB_MODE="offline", HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1")
    return out


def sh(cmd: list[str], timeout: int, cwd: Path = REPO) -> tuple[int, str]:
    print("$ " + " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    out = p.stdout + p.stderr
    print(out[-3000:], flush=True)
    return p.returncode, out


class Check:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, float]] = []
        self.sections: list[str] = []

    def step(self, name: str, ok: bool, detail: str, seconds: float) -> None:
        self.rows.append((name, "PASS" if ok else "FAIL", detail, seconds))
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail} ({seconds:.0f} s)", flush=True)

    @property
    def failed(self) -> bool:
        return any(r[1] == "FAIL" for r in self.rows)


def step_versions(check: Check) -> dict[str, str | None]:
    t = time.time()
    found = {m: version(m) for m in USED}
    missing = [m for m, v in found.items() if v is None]
    installable = [m for m in missing if m in INSTALLABLE]
    if installable:
        prefixes = {w for m in installable for w in INSTALLABLE[m]}
        wheels = sorted(str(w) for w in WHEELS.glob("*.whl") if w.name.split("-")[0] in prefixes)
        lacking = sorted(prefixes - {Path(w).name.split("-")[0] for w in wheels})
        if lacking:
            check.step("install", False, f"missing {installable}; no wheel of {lacking} in {WHEELS} "
                       "(run experiments/gpu_check/prepare.py where there is network)", time.time() - t)  # fmt: skip
        else:
            rc, out = sh(
                [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                 "--no-compile", "--upgrade", "--target", str(SITE), *wheels],
                600,
            )  # fmt: skip
            sys.path.insert(0, str(SITE))
            importlib.invalidate_caches()
            found.update({m: version(m) for m in installable})
            still = [f"{m} ({import_error(m)})" for m in installable if found[m] is None]
            check.step("install", rc == 0 and not still,
                       f"installed {', '.join(Path(w).name for w in wheels)} into {SITE}" if rc == 0 and not still
                       else f"pip exit {rc}; still missing {still}: {out.strip().splitlines()[-1:]}", time.time() - t)  # fmt: skip
    absent = [m for m in USED if found.get(m) is None]
    check.step(
        "versions",
        not absent,
        "all present" if not absent else f"missing: {absent}",
        time.time() - t,
    )
    if found.get("torch"):
        import torch

        found["cuda"] = torch.version.cuda
        found["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    found["python"] = platform.python_version()
    return found


def step_tests(check: Check) -> None:
    t = time.time()
    rc, out = sh(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/gpu", "-p", "no:cacheprovider"],
        400,
    )
    last = out.strip().splitlines()[-1] if out.strip() else ""
    # On a CPU every GPU test skips: exit 0 with "N skipped" is the expected result there.
    check.step("gpu tests", rc == 0, last, time.time() - t)


def step_bench(check: Check, device: str, work: Path) -> None:
    t = time.time()
    tiny = device == "cpu"
    out = work / "bench"
    cmd = [sys.executable, "-c", "from tmc_lightning.cli.bench import main; main()",
           "--models", "tmc", "lvit", "--presets", "tiny" if tiny else "paper",
           "--image-size", "64" if tiny else "224", "--batch", "2" if tiny else "8",
           "--variants", "fp32", "bf16", "--steps", "2" if tiny else "10", "--warmup", "1" if tiny else "3",
           "--device", device, "--dataset", "none", "--matmul-size", "512" if tiny else "8192",
           "--out", str(out)]  # fmt: skip
    rc, text = sh(cmd, 300)
    if rc or not out.with_suffix(".json").is_file():
        check.step(
            "bench",
            False,
            f"tmc-bench exit {rc}: {text.strip().splitlines()[-1:]}",
            time.time() - t,
        )
        return
    data = json.loads(out.with_suffix(".json").read_text())
    lines = ["| model | variant | train step ms | images/s | peak memory MB | TFLOP/s | share of matmul |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in data["rows"]:
        tflops = (r.get("train_gflops_per_s") or 0) / 1000
        share = r.get("frac_of_matmul")
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['train_step_ms']:.1f} | {r['train_images_per_s']:.1f} | "
            f"{r['peak_mem_mb']:.0f} | {tflops:.2f} | {'' if share is None else f'{100 * share:.0f}%'} |"
        )
    mm = data.get("matmul_gflops_per_s", {})
    lines.append(f"\nMatmul ceiling in the same run (GFLOP/s): {json.dumps(mm)}")
    check.sections.append("## tmc-bench\n\n`" + " ".join(cmd[3:]) + "`\n\n" + "\n".join(lines))
    check.step("bench", True, f"{len(data['rows'])} rows", time.time() - t)


def step_train(check: Check, device: str, work: Path, minutes: float) -> None:
    t = time.time()
    if not (DATA / "Train_Folder").is_dir():
        check.step("train", False, f"{DATA} is missing (run experiments/gpu_check/prepare.py)", 0)
        return
    tiny = device == "cpu"
    run_dir = work / "train"
    cmd = [sys.executable, "-m", "tmc_lightning.train", "dataset=qata", f"dataset.root={DATA}",
           "model=tmc", f"model.preset={'tiny' if tiny else 'paper'}", "model.pretrained=false",
           "+model.text.config={model_type:bert}" if not tiny else "dataset.image_size=64",
           "dataset.augment=false", "dataset.num_workers=" + ("0" if tiny else "4"),
           "callbacks.rich_progress=false", "callbacks.early_stopping=null",
           f"trainer={'cpu' if tiny else 'gpu'}", f"trainer.precision={'32-true' if tiny else 'bf16-mixed'}",
           f"+trainer.max_time=00:00:{int(minutes):02d}:{int(60 * (minutes % 1)):02d}",
           f"trainer.max_epochs={1 if tiny else 30}", f"hydra.run.dir={run_dir}"]  # fmt: skip
    if tiny:
        cmd.append("+trainer.limit_train_batches=4")
    rc, text = sh(cmd, int(60 * minutes) + 240)
    metrics = run_dir / "metrics.json"
    if rc or not metrics.is_file():
        check.step("train", False, f"exit {rc}: {text.strip().splitlines()[-1:]}", time.time() - t)
        return
    m = json.loads(metrics.read_text())
    val = m.get("val", {})
    detail = (f"val Dice {val.get('dice', float('nan')):.4f} (global {val.get('dice_global', float('nan')):.4f}) "
              f"after {m.get('epochs_trained')} epochs, precision {m.get('precision', {}).get('used')}")  # fmt: skip
    check.sections.append(
        f"## Short training\n\n`{' '.join(cmd[1:])}`\n\n{detail}; sizes {m.get('dataset', {}).get('sizes')}"
    )
    check.step("train", "dice" in val, detail, time.time() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget (GPU)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or (
        REPO
        / "experiments"
        / "gpu_check"
        / ("bench_gpu.md" if args.device == "cuda" else "gpu_check_dryrun.md")
    )
    check = Check()
    started = time.time()
    found = step_versions(check)
    if found.get("torch") and found.get("omegaconf") and found.get("hydra"):
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            check.step("cuda", False, "no CUDA device visible; use --device cpu for a dry run", 0)
        else:
            with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
                step_tests(check)
                step_bench(check, args.device, Path(tmp))
                step_train(
                    check, args.device, Path(tmp), args.minutes if args.device == "cuda" else 0.5
                )
    lines = [f"# GPU check ({args.device}), {time.strftime('%Y-%m-%d %H:%M')}", "",
             "Command: `python experiments/gpu_check/run.py" + (" --device cpu" if args.device == "cpu" else "") + "`  ",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in found.items()), "",
             "| step | result | detail | seconds |", "|---|---|---|---:|"]  # fmt: skip
    lines += [f"| {n} | {r} | {d} | {s:.0f} |" for n, r, d, s in check.rows]
    lines += ["", *check.sections, "", f"Total {time.time() - started:.0f} s."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
