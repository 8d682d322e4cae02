"""Small helpers for entry points: run metadata, model report, JSON output."""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def git_commit() -> str | None:
    """The commit of the source tree (with ``-dirty`` if modified), or None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@torch.no_grad()
def model_report(model: nn.Module, image_size: int, max_words: int) -> dict[str, Any]:
    """Parameter counts and forward FLOPs for one image (``torch.utils.flop_counter``)."""
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    image = torch.zeros(1, 3, image_size, image_size, device=p.device)
    ids = torch.zeros(1, max_words, dtype=torch.long, device=p.device)
    attn = torch.ones(1, max_words, dtype=torch.long, device=p.device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(image, ids, attn)
    model.train(was_training)
    return {
        "params": sum(q.numel() for q in model.parameters()),
        "trainable_params": sum(q.numel() for q in model.parameters() if q.requires_grad),
        "gflops_per_image": counter.get_total_flops() / 1e9,
    }


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder a checkpoint belongs to: ``<run>/checkpoints/<name>.ckpt`` -> ``<run>``."""
    return Path(ckpt_path).resolve().parent.parent


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@contextmanager
def atomic_folder(dest: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling that becomes ``dest`` only when the block succeeds.

    Readers never see half a folder, and an error (or Ctrl-C) leaves ``dest`` as it was and no
    temporary folder behind. ``replace=False``: ``dest`` must not exist, also not when the
    block ends (another process that got there first wins: ``FileExistsError``).
    ``replace=True``: an existing ``dest`` is swapped for the new one after the build. The
    temporary folder gets the permissions a plain ``mkdir`` would give, not ``mkdtemp``'s 0700.
    """
    dest = Path(dest)
    if dest.exists() and not replace:
        raise FileExistsError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if replace and dest.exists():
            trash = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, trash)
            os.rename(tmp, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                os.rename(tmp, dest)
            except OSError as err:  # a non-empty dest appeared meanwhile (a concurrent writer)
                raise FileExistsError(f"{dest} appeared while it was being written") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and rename, so readers never see half a file."""
    write_text_atomic(path, json.dumps(data, indent=2, default=float))


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what the platform says where that is absent."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """The machine a figure was measured on: CPU, cores, torch, its threads and CPU capability."""
    device = device or torch.device("cpu")
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """:func:`machine_info` as the one line every results file carries."""
    m = info or machine_info()
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    allocator = f"; allocator: {m['allocator']}" if m.get("allocator") else ""
    return (
        f"CPU {m['cpu']} ({m['logical_cpus']} logical CPUs), torch {m['torch']} with "
        f"{m['torch_threads']} threads, CPU capability {m['cpu_capability']}{gpu}{allocator}"
    )


def recorded_command(argv: Sequence[str] | None = None) -> str:
    """The command line that is running, as a user would retype it (from ``sys.argv``)."""
    argv = list(sys.argv if argv is None else argv)
    prog = argv[0] if argv else "python"
    if prog.endswith(".py"):  # python path/to/script.py, relative to the repository if inside
        root = Path(__file__).resolve().parents[2]
        path = Path(prog).resolve()
        words = ["python", str(path.relative_to(root)) if root in path.parents else prog]
    else:  # a console script: its name, not the venv's path to it
        words = [Path(prog).name]
    return shlex.join(words + argv[1:])


def provenance(device: torch.device | None = None, argv: Sequence[str] | None = None) -> dict:
    """What every results file records: the command, the git commit and the machine."""
    machine = machine_info(device)
    return {
        "command": recorded_command(argv),
        "git_commit": git_commit(),
        "machine": machine,
        "machine_line": machine_line(machine),
    }


# -- where and in what precision a model runs: decided once ------------------------------------
def on_gpu(accelerator: str) -> bool:
    """Whether ``trainer.accelerator`` / ``accelerator=`` means a GPU: gpu, cuda, or auto with one."""
    a = str(accelerator)
    return (
        a in ("gpu", "cuda") or a.startswith("cuda:") or (a == "auto" and torch.cuda.is_available())
    )


def device_for(accelerator: str) -> torch.device:
    """The torch device an ``accelerator`` setting names: cpu, gpu/cuda (cuda:N), or auto."""
    a = str(accelerator)
    if on_gpu(a):
        return torch.device(a if a.startswith("cuda:") else "cuda")
    if a not in ("cpu", "auto"):
        raise ValueError(f"accelerator={a!r}: use cpu, gpu (or cuda, cuda:N) or auto")
    return torch.device("cpu")


# Lightning's precision names -> the autocast dtype (None: autocast off)
AUTOCAST = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context Lightning's ``precision`` names (disabled for 32-true)."""
    if precision not in AUTOCAST:
        raise ValueError(f"precision={precision!r}: use one of {', '.join(AUTOCAST)}")
    dtype = AUTOCAST[precision]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
