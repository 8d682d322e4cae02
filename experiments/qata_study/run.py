"""The QaTa-COV19 study: Table 2's rows, Table 1's text-encoder swap and UNet, 2 seeds each.

    .venv/bin/python experiments/qata_study/run.py [--commit] [--rows tmc unet ...] [--seeds 1 2]
        [-- extra overrides for every run]

Trains every (row, seed) one after another with ``experiment=qata_study`` (the shared recipe
and budget) plus the row's own overrides, and scores each on QaTa val. Resumable: a finished
run's small results are copied to ``experiments/qata_study/runs/<row>-seed<N>/`` (with
``--commit``, committed there at once) and skipped from then on, on any machine; a run
interrupted mid-way continues from its ``last.ckpt`` under ``outputs/qata_study/``. Once no run
is left, ``tmc-report`` writes ``experiments/qata_study/report/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "experiments" / "qata_study"
QATA = REPO.parent / "shared" / "data" / "QaTa-COV19"
PY = sys.executable


@dataclass(frozen=True)
class Row:
    slug: str  # folder name
    label: str  # the paper's name of the row (report rows and plot labels)
    overrides: tuple[str, ...]


TMC = ("model=tmc",)
# In training order (seed 1 of every row first): an unfinished study still has whole rows.
ROWS = (
    Row("tmc", "TMC", (*TMC, "model.mcm=true", "model.align=true")),
    Row("unet", "UNet", ("model=unet", "model.preset=small")),
    Row("tmc-neither", "neither (TMC encoders)", (*TMC, "model.mcm=false", "model.align=false")),
    Row("lvit", "neither (LViT)", ("model=lvit",)),
    Row("tmc-mcm", "MCM only", (*TMC, "model.mcm=true", "model.align=false")),
    Row("tmc-align", "align only", (*TMC, "model.mcm=false", "model.align=true")),
    Row(
        "tmc-random-text",
        "TMC, random-init MiniLM",
        (*TMC, "text_encoder=minilm", "text_encoder.pretrained=false"),
    ),
)
# Paired Wilcoxon tests of the report (labels): issue 19's four, plus the text-encoder swap.
COMPARISONS = (
    ("TMC", "neither (TMC encoders)"),
    ("MCM only", "neither (TMC encoders)"),
    ("align only", "neither (TMC encoders)"),
    ("TMC", "neither (LViT)"),
    ("TMC", "UNet"),
    ("TMC", "TMC, random-init MiniLM"),
)
KEEP = ("metrics.json", "config.yaml", "per_image_val.csv", "per_image_test.csv")


class StudyError(RuntimeError):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", nargs="+", choices=[r.slug for r in ROWS], help="default: all")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--root", default=str(QATA), help="QaTa-COV19 folder ('' : the config's)")
    ap.add_argument("--runs", type=Path, default=STUDY / "runs", help="finished runs' results")
    ap.add_argument(
        "--work", type=Path, default=REPO / "outputs" / "qata_study", help="run folders"
    )
    ap.add_argument("--report", type=Path, default=STUDY / "report")
    ap.add_argument("--commit", action="store_true", help="git-commit each finished run at once")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    return ap.parse_args(argv)


def machine_line() -> str:
    from tmc_lightning.utils import cpu_model

    model = cpu_model()
    return f"{model}, {os.cpu_count()} logical CPUs"


def git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise StudyError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def run_one(row: Row, seed: int, args: argparse.Namespace) -> Path:
    """Train (or continue) one run; returns its finished run folder under --work."""
    run_id = f"{row.slug}-seed{seed}"
    work = args.work / run_id
    last = work / "checkpoints" / "last.ckpt"
    timing_path = work / "study_timing.json"
    if (work / "metrics.json").is_file() and "val" in json.loads(
        (work / "metrics.json").read_text()
    ):
        return work  # finished, not yet copied (the study stopped in between)
    if last.is_file():
        cmd = [PY, "-m", "tmc_lightning.train", f"ckpt_path={last}"]
        print(f"[study] {run_id}: resuming from {last}", flush=True)
    else:
        if work.exists():  # stopped before its first checkpoint: nothing to keep
            shutil.rmtree(work)
        root = [f"dataset.root={args.root}"] if args.root else []
        cmd = [
            PY, "-m", "tmc_lightning.train", "experiment=qata_study", *row.overrides,
            f"seed={seed}", f"label='{row.label}'", *root, *args.overrides,
            f"hydra.run.dir={work}", "callbacks.rich_progress=false",
        ]  # fmt: skip
        print(f"[study] {run_id}: {' '.join(cmd[3:])}", flush=True)
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {"attempts": []}
    for old in timing["attempts"]:
        if "wall_s" not in old and last.is_file():  # killed: its time up to the kept checkpoint
            kept = max(0.0, last.stat().st_mtime - old["started"])  # 0: it saved nothing
            old.update(wall_s=round(kept, 1), cpu_s=None)
    attempt = {
        "command": cmd[1:],
        "git_commit": git("rev-parse", "HEAD"),
        # tracked files that differ from that commit when the attempt started (none: clean)
        "uncommitted": git("status", "--porcelain", "--untracked-files=no").splitlines(),
        "machine": machine_line(),
        "started": time.time(),
    }
    timing["attempts"].append(attempt)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    work.mkdir(parents=True, exist_ok=True)  # the start is on record even if this is killed
    timing_path.write_text(json.dumps(timing, indent=2))
    proc = subprocess.Popen(cmd, cwd=REPO)
    forward = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        proc.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: it saves at this step and exits
        proc.wait()
    finally:
        signal.signal(signal.SIGTERM, forward)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    attempt.update(
        wall_s=round(time.time() - attempt["started"], 1),
        cpu_s=round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
        exit=proc.returncode,
        finished_at=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    if work.is_dir():
        timing_path.write_text(json.dumps(timing, indent=2))
    if proc.returncode in (130, 143):
        raise StudyError(
            f"{run_id} interrupted; its last.ckpt is at the step it reached. Run the study "
            "again to continue it."
        )
    if proc.returncode:
        raise StudyError(
            f"{run_id} failed (exit {proc.returncode}); its log is {work / 'train.log'}. "
            "Fix the cause and run the study again: it continues from the last checkpoint."
        )
    return work


def keep_results(work: Path, dest: Path) -> None:
    """Copy a finished run's small results to ``dest`` (all at once, or nothing)."""
    tmp = dest.parent / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in KEEP:
        if (work / name).is_file():
            shutil.copy2(work / name, tmp / name)
    for csv_path in sorted(work.glob("logs*/metrics.csv")):  # the validation curve
        (tmp / csv_path.parent.name).mkdir()
        shutil.copy2(csv_path, tmp / csv_path.parent.name / "metrics.csv")
    attempts = json.loads((work / "study_timing.json").read_text())["attempts"]
    timing = {
        "wall_s": round(sum(a.get("wall_s") or 0 for a in attempts), 1),
        "cpu_s": round(sum(a.get("cpu_s") or 0 for a in attempts), 1),
        "attempts": attempts,
    }
    (tmp / "timing.json").write_text(json.dumps(timing, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def write_report(args: argparse.Namespace) -> Path:
    from tmc_lightning.reporting.build import build_report

    labels = {r.label for r in ROWS if any(args.runs.glob(f"{r.slug}-seed*/metrics.json"))}
    compare = [pair for pair in COMPARISONS if set(pair) <= labels]
    return build_report(
        args.runs, args.report, group_by=["label"], paper_dataset="qata", compare=compare
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.root and not Path(args.root).is_dir():
        print(
            f"error: --root {args.root} is not a folder (the QaTa-COV19 release)", file=sys.stderr
        )
        return 2
    rows = [r for r in ROWS if args.rows is None or r.slug in args.rows]
    args.runs.mkdir(parents=True, exist_ok=True)
    try:
        for seed in args.seeds:
            for row in rows:
                dest = args.runs / f"{row.slug}-seed{seed}"
                if (dest / "metrics.json").is_file():
                    print(f"[study] {dest.name}: done, results in {dest}", flush=True)
                    continue
                keep_results(run_one(row, seed, args), dest)
                val = json.loads((dest / "metrics.json").read_text())["val"]
                print(f"[study] {dest.name}: val Dice {val['dice']:.4f}", flush=True)
                if args.commit and git("status", "--porcelain", "--", str(dest)):
                    git("add", "--", str(dest))
                    git(
                        "commit",
                        "-q",
                        "-m",
                        f"qata_study: {dest.name} (val Dice {val['dice']:.4f})",
                        "--",
                        str(dest),
                    )
        out = write_report(args)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"[study] report: {out / 'report.md'}")
    if args.commit and git("status", "--porcelain", "--", str(out)):
        git("add", "-A", "--", str(out))
        git("commit", "-q", "-m", "qata_study: report", "--", str(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
