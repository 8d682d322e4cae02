"""``tmc-train`` / ``python -m tmc_lightning.train``: Hydra's command line around one run."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from tmc_lightning.cli import resolvers  # noqa: F401  (registers the resolvers conf/ uses)
from tmc_lightning.cli.common import USER_ERRORS, one_line_errors
from tmc_lightning.errors import MOVED_KEYS
from tmc_lightning.inference.checkpoint import CheckpointError, read_checkpoint
from tmc_lightning.training.run import run
from tmc_lightning.utils import CONF_DIR


def missing_checkpoint(argv: list[str]) -> str | None:
    """The error for a ``ckpt_path=`` override naming no file or a broken one, checked before
    Hydra makes folders."""
    if "-m" in argv or "--multirun" in argv:
        return None
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        value = value.strip("'\"")
        if key != "ckpt_path" or not sep or value in ("", "null"):
            continue
        if not Path(value).is_file():
            return (
                f"ckpt_path={value}: no such checkpoint file. To resume a run, pass its "
                "checkpoints/last.ckpt, e.g. "
                "ckpt_path=outputs/<dataset>/<model>/<date>/checkpoints/last.ckpt"
            )
        try:  # truncated, another program's, or an unregistered model: say so now
            read_checkpoint(value)
        except CheckpointError as err:
            return f"ckpt_path={value}: {err}"
    return None


def moved_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``dataset.lr=`` / ``dataset.dice_weight=`` / ``dataset.align_weight=`` as their new keys.

    The training recipe left ``conf/dataset/*.yaml`` for ``conf/recipe/``; commands written
    before (sweeps included: ``dataset.lr=1e-3,3e-4``) keep working. Returns the rewritten
    arguments and one note per rewritten key.
    """
    out, notes = [], []
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        moved = MOVED_KEYS.get(key.removeprefix("dataset.")) if key.startswith("dataset.") else None
        if sep and moved:
            notes.append(
                f"note: {key} is now {moved} (conf/recipe/<dataset>.yaml); using {moved}={value}"
            )
            arg = f"{moved}={value}"
        out.append(arg)
    return out, notes


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@one_line_errors  # a non-finite loss (exit 3) and an interrupt keep the run folder
def _hydra_main(cfg: DictConfig) -> float | None:
    hc = hydra.core.hydra_config.HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        results = run(cfg, run_dir)
    except USER_ERRORS:  # a typo, bad data, offline: nothing of the run is worth keeping
        if not cfg.ckpt_path:
            remove_unused_run_dir(run_dir, hc.output_subdir, f"{hc.job.name}.log")
        raise
    return results.get("val", {}).get("dice")  # the value a Hydra sweeper optimises


def remove_unused_run_dir(run_dir: Path, hydra_subdir: str | None, log_name: str) -> None:
    """Remove what Hydra made for a run that failed (config, data, encoders) before writing.

    Hydra's record of the command and the job log go, then the run folder and every parent
    that this leaves empty (``outputs/qata/tmc/``), up to the working folder. A folder that
    held anything else keeps it, and stops the climb.
    """
    logging.shutdown()  # closes the job log's file handler
    if hydra_subdir:
        shutil.rmtree(run_dir / hydra_subdir, ignore_errors=True)
    (run_dir / log_name).unlink(missing_ok=True)
    stop = {Path.cwd().resolve(), Path.home().resolve()}
    for folder in [run_dir.resolve(), *run_dir.resolve().parents]:
        if folder in stop or folder == folder.parent:
            break
        try:
            folder.rmdir()
        except OSError:
            break  # not empty: files that were there before this run


def main() -> float | None:
    """``tmc-train``: Hydra's command line, after checking a resume's checkpoint exists."""
    sys.argv[1:], notes = moved_overrides(sys.argv[1:])
    for note in notes:
        print(note, file=sys.stderr)
    error = missing_checkpoint(sys.argv[1:])
    if error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    return _hydra_main()
