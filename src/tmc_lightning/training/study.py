"""A resumable study: named rows of overrides x seeds, trained one after another, then reported.

A study script under ``experiments/<name>/run.py`` defines a :class:`Study` (its rows, the
overrides every run shares, the comparisons of its report) and calls :func:`main`. Each
(row, seed) trains in ``--work/<row>-seed<N>/`` (``outputs/<name>/`` by default). A finished
run's small results (``metrics.json``, ``config.yaml``, per-image CSVs, the validation curve,
wall and CPU time per attempt, the git commit and machine of each attempt) are copied to
``experiments/<name>/runs/<row>-seed<N>/`` at once (with ``--commit``, committed there), and
skipped from then on, on any machine; a run interrupted mid-way continues from its
``last.ckpt``. Once no run is left, ``tmc-report`` writes ``experiments/<name>/report/``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmc_lightning.utils import atomic_folder, machine_line

REPO = Path(__file__).resolve().parents[3]
# The shared QaTa-COV19 train/val beside the repository (../shared/data/QaTa-COV19)
QATA_ROOT = str(REPO.parent / "shared" / "data" / "QaTa-COV19")
PY = sys.executable
KEEP = ("metrics.json", "config.yaml", "per_image_val.csv", "per_image_test.csv")


@dataclass(frozen=True)
class Row:
    slug: str  # folder name
    label: str  # the row's name in reports and plots (the paper's, where it has one)
    overrides: tuple[str, ...]
    seeds: tuple[int, ...] | None = None  # None: the study's --seeds


@dataclass(frozen=True)
class Study:
    name: str  # experiments/<name>/, outputs/<name>/ and the commit messages
    rows: tuple[Row, ...]  # in training order
    shared: tuple[str, ...] = ()  # overrides of every run (e.g. experiment=qata_study)
    comparisons: tuple[tuple[str, str], ...] = ()  # report's paired tests (row labels)
    seeds: tuple[int, ...] = (1, 2)
    root: str | None = None  # default dataset.root passed to every run (None: the config's)
    paper_dataset: str | None = None  # the paper's figures beside each row (tmc-report)
    order: str = "seed"  # "seed": every row's first seed, then every second; "row": row by row
    gap: tuple[str, str] | None = None  # report: share of the floor-to-ceiling gap (row labels)
    doc: str = field(default="", compare=False)

    @classmethod
    def on_qata(cls, name: str, rows: Sequence[Row], shared: Sequence[str], **kw: Any) -> Study:
        """A study on the shared QaTa-COV19 split, beside the paper's QaTa figures."""
        kw = {"root": QATA_ROOT, "paper_dataset": "qata", **kw}
        return cls(name=name, rows=tuple(rows), shared=tuple(shared), **kw)

    @property
    def folder(self) -> Path:
        return REPO / "experiments" / self.name


class StudyError(RuntimeError):
    pass


def parse_args(study: Study, argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=study.doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", nargs="+", choices=[r.slug for r in study.rows], help="default: all")
    ap.add_argument("--seeds", nargs="+", type=int, help=f"default: {list(study.seeds)}")
    ap.add_argument(
        "--root", default=study.root, help="dataset.root of every run ('' : the config's)"
    )
    ap.add_argument("--runs", type=Path, default=study.folder / "runs", help="finished runs")
    ap.add_argument("--work", type=Path, default=REPO / "outputs" / study.name, help="run folders")
    ap.add_argument("--report", type=Path, default=study.folder / "report")
    ap.add_argument("--commit", action="store_true", help="git-commit each finished run at once")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    return ap.parse_args(argv)


def git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise StudyError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def plan(study: Study, args: argparse.Namespace) -> list[tuple[Row, int]]:
    """Every (row, seed) to run, in training order."""
    rows = [r for r in study.rows if args.rows is None or r.slug in args.rows]
    seeds_of = {r.slug: tuple(args.seeds or r.seeds or study.seeds) for r in rows}
    if study.order == "row":
        return [(r, s) for r in rows for s in seeds_of[r.slug]]
    longest = max((len(seeds) for seeds in seeds_of.values()), default=0)
    return [
        (r, seeds_of[r.slug][i]) for i in range(longest) for r in rows if i < len(seeds_of[r.slug])
    ]


def run_one(study: Study, row: Row, seed: int, args: argparse.Namespace) -> Path:
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
            PY, "-m", "tmc_lightning.train", *study.shared, *row.overrides,
            f"seed={seed}", f"label='{row.label}'", f"group={study.name}", *root,
            *args.overrides, f"hydra.run.dir={work}", "callbacks.rich_progress=false",
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
    if proc.returncode in (130, 143, -2, -15):  # saved and stopped, or stopped before start
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
    with atomic_folder(dest, replace=True) as tmp:
        _copy_results(work, tmp)


def _copy_results(work: Path, tmp: Path) -> None:
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


def write_report(study: Study, args: argparse.Namespace) -> Path:
    from tmc_lightning.reporting.build import build_report

    labels = {r.label for r in study.rows if any(args.runs.glob(f"{r.slug}-seed*/metrics.json"))}
    compare = [pair for pair in study.comparisons if set(pair) <= labels]
    return build_report(
        args.runs,
        args.report,
        group_by=["label"],
        paper_dataset=study.paper_dataset,
        compare=compare or None,
        gap=study.gap if study.gap and set(study.gap) <= labels else None,
    )


def commit(paths: Sequence[Path], message: str) -> None:
    """Commit exactly ``paths`` (new or changed) with ``message``; nothing if unchanged."""
    names = [str(p) for p in paths]
    if git("status", "--porcelain", "--", *names):
        git("add", "-A", "--", *names)
        git("commit", "-q", "-m", message, "--", *names)


def main(study: Study, argv: list[str] | None = None) -> int:
    args = parse_args(study, argv)
    if args.root and not Path(args.root).is_dir():
        print(f"error: --root {args.root} is not a folder (the dataset's root)", file=sys.stderr)
        return 2
    args.runs.mkdir(parents=True, exist_ok=True)
    try:
        for row, seed in plan(study, args):
            dest = args.runs / f"{row.slug}-seed{seed}"
            if (dest / "metrics.json").is_file():
                print(f"[study] {dest.name}: done, results in {dest}", flush=True)
                continue
            keep_results(run_one(study, row, seed, args), dest)
            val = json.loads((dest / "metrics.json").read_text())["val"]
            print(f"[study] {dest.name}: val Dice {val['dice']:.4f}", flush=True)
            if args.commit:
                commit([dest], f"{study.name}: {dest.name} (val Dice {val['dice']:.4f})")
        out = write_report(study, args)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"[study] report: {out / 'report.md'}")
    if args.commit:
        commit([out], f"{study.name}: report")
    return 0
