"""``trainer.precision=auto``: the fastest precision this hardware runs well, and why.

bf16 autocast pays only where the matrix units take bf16 natively: on CPUs with AVX512-BF16
or AMX it ran ~2x faster than fp32, on AVX2/AVX512-only CPUs it ran 4-10x slower (measured,
``experiments/bench_cpu/bench_cpu.md``). On CUDA, bf16 where the device has it, else fp16 with
gradient scaling (Lightning's ``16-mixed``).

Where the flags allow bf16, a run's ``auto`` goes further: :func:`choose_for_run` times a few
train steps of the run's own model and batch in fp32 and bf16 and keeps bf16 only where it is
at least ``perf.bf16_min_speedup`` (1.15) times faster, caching the timings per machine and
model signature in ``$TMC_CACHE_DIR/precision.json`` (docs/budgets.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tmc_lightning.errors import ConfigError
from tmc_lightning.utils import autocast_for, cpu_model, on_gpu, write_json_atomic

log = logging.getLogger("tmc_lightning.train")

AUTO = "auto"
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is absent, e.g. macOS)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_reason(flags: set[str] | None = None, capability: str | None = None) -> str | None:
    """Why this CPU runs bf16 natively, or None where it does not."""
    flags = cpu_flags() if flags is None else flags
    found = [f for f in CPU_BF16_FLAGS if f in flags]
    if found:
        return f"CPU has {', '.join(found)}"
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if "AMX" in capability.upper() or "BF16" in capability.upper():
        return f"torch CPU capability {capability}"
    return None


def choose_precision(requested: str, accelerator: str) -> tuple[str, str]:
    """The precision to train with and why; an explicit choice always wins."""
    requested = str(requested)
    if requested != AUTO:
        return requested, "set explicitly (trainer.precision)"
    if on_gpu(accelerator):
        if not torch.cuda.is_available():
            return "32-true", "no CUDA device visible"
        name = torch.cuda.get_device_name(0)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16-mixed", f"CUDA device {name} supports bf16"
        return "16-mixed", f"CUDA device {name} lacks bf16: fp16 with gradient scaling"
    if accelerator not in ("cpu", "auto"):
        return "32-true", f"accelerator {accelerator}: auto picks fp32"
    reason = cpu_bf16_reason()
    if reason:
        return "bf16-mixed", f"{reason} (native bf16 matmul)"
    capability = torch.backends.cpu.get_cpu_capability()
    return "32-true", f"CPU ({capability}) has neither AVX512-BF16 nor AMX: bf16 would be slower"


# -- auto on a CPU: measured ----------------------------------------------------------------
# The CPU's flags say only whether bf16 *can* be fast. Whether it is for a given model and
# batch was measured both ways on one machine class (TMC small at 128 px: 0.97x-1.39x, UNet
# 1.46x), so where the flags allow bf16, ``auto`` times a few train steps of the run's own model
# and batch in both precisions and keeps bf16 only when it is clearly faster.
FP32, BF16 = "32-true", "bf16-mixed"
PROBE_ROUNDS = 3  # timed steps per precision, after one untimed warm-up step each
PROBE_MAX_S = 30.0  # stop timing after this (at least one timed step each)
CACHE_FILE = "precision.json"
CACHE_VERSION = 1


@dataclasses.dataclass
class PrecisionChoice:
    """The precision a run uses, why, and (where measured) the step times that decided it."""

    used: str
    reason: str
    step_ms: dict[str, float] | None = None
    speedup: float | None = None  # fp32 step time / bf16 step time
    threshold: float | None = None
    cached: bool | None = None  # True: the step times came from the cache
    probe_s: float | None = None  # seconds this run spent timing (0 when cached)

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def decide(step_ms: dict[str, float], threshold: float) -> tuple[str, str, float]:
    """bf16 only where its step is at least ``threshold`` times faster than fp32's."""
    fp32, bf16 = step_ms[FP32], step_ms[BF16]
    speedup = fp32 / bf16 if bf16 > 0 else float("inf")
    times = f"fp32 {fp32:.0f} ms, bf16 {bf16:.0f} ms per train step: bf16 {speedup:.2f}x"
    if speedup >= threshold:
        return BF16, f"measured {times} >= {threshold:g}x (perf.bf16_min_speedup)", speedup
    return FP32, f"measured {times} < {threshold:g}x (perf.bf16_min_speedup): fp32", speedup


def time_precisions(
    step: Callable[[str], float],
    rounds: int = PROBE_ROUNDS,
    max_s: float = PROBE_MAX_S,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median milliseconds of ``step(precision)`` (which returns its seconds) for fp32 and bf16.

    One untimed warm-up step each (first-call allocation and kernel selection), then the two
    alternate, so a machine that slows down midway (other users) slows both alike.
    """
    start = clock()
    for precision in (FP32, BF16):
        step(precision)
    times: dict[str, list[float]] = {FP32: [], BF16: []}
    for _ in range(rounds):
        for precision in (FP32, BF16):
            times[precision].append(step(precision))
        if clock() - start > max_s:
            break
    return {p: round(1000 * statistics.median(t), 2) for p, t in times.items()}


def machine_signature() -> dict[str, Any]:
    """What makes step times differ between machines: the host, its CPU, threads, torch."""
    flags = cpu_flags()
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "bf16_flags": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
    }


def model_signature(module: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """What makes step times differ between runs: the network, its switches and the batch."""
    hp = module.hparams
    shapes = {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    return {
        "model": hp.get("model_name"),
        "kwargs": json.loads(json.dumps(hp.get("model_kwargs"), sort_keys=True, default=str)),
        "channels_last": bool(hp.get("channels_last")),
        "sdpa": bool(hp.get("sdpa", True)),
        "align_weight": float(hp.get("align_weight", 0.0)),
        "batch": shapes,
    }


def cache_key(machine: dict[str, Any], model: dict[str, Any]) -> str:
    text = json.dumps({"machine": machine, "model": model}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(cache_dir: Path | None = None) -> Path:
    """``$TMC_CACHE_DIR/precision.json`` (``~/.cache/tmc_lightning/precision.json``)."""
    from tmc_lightning.paths import cache_root

    return Path(cache_dir or cache_root()) / CACHE_FILE


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    return data.get("entries", {})


def measured_cpu_precision(
    step: Callable[[str], float],
    machine: dict[str, Any],
    model: dict[str, Any],
    threshold: float = 1.15,
    cache_dir: Path | None = None,
) -> PrecisionChoice:
    """fp32 or bf16 from timed steps, or from this machine's and model's cached timings.

    The cache keeps the step times, not the decision, so a new threshold needs no new timing.
    """
    if threshold <= 0:
        raise ConfigError(f"perf.bf16_min_speedup={threshold} must be > 0 (e.g. 1.15)")
    path, key = cache_path(cache_dir), cache_key(machine, model)
    entries = _read_cache(path)
    cached = key in entries
    if cached:
        step_ms, probe_s = entries[key]["step_ms"], 0.0
    else:
        start = time.perf_counter()
        step_ms = time_precisions(step)
        probe_s = round(time.perf_counter() - start, 2)
        entries[key] = {
            "machine": machine,
            "model": model,
            "step_ms": step_ms,
            "measured": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {"version": CACHE_VERSION, "entries": entries})
        except OSError as err:  # a read-only cache costs a re-measurement next time, no more
            log.warning("could not cache the precision timing in %s: %s", path, err)
    used, reason, speedup = decide(step_ms, threshold)
    if cached:
        reason += f" (cached in {path}, measured {entries[key].get('measured', '?')})"
    return PrecisionChoice(
        used, reason, dict(step_ms), round(speedup, 3), threshold, cached, probe_s
    )


class StepProbe:
    """Times one train step (forward, loss, backward, fused AdamW step) of the run's module.

    Used as a context manager: on exit the weights, buffers (BatchNorm statistics), gradients
    and train/eval mode are as they were (:func:`kept_rng` keeps the random generators), so
    the run that follows trains exactly as it would have without the probe.
    """

    def __init__(self, module: Any, batch: dict[str, Any]) -> None:
        self.module, self.batch = module, batch

    def __enter__(self) -> StepProbe:
        m = self.module
        self._state = {k: v.detach().clone() for k, v in m.state_dict().items()}
        self._training = m.training
        params = [p for p in m.parameters() if p.requires_grad]
        self._opt = torch.optim.AdamW(params, lr=1e-12, fused=True)
        m.train()
        return self

    def __call__(self, precision: str) -> float:
        m, batch = self.module, self.batch
        start = time.perf_counter()
        with autocast_for(torch.device("cpu"), precision):
            loss = m._step(batch)[0]
        loss.backward()
        self._opt.step()
        self._opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def __exit__(self, *exc: Any) -> None:
        m = self.module
        with torch.no_grad():
            m.load_state_dict(self._state)
        for p in m.parameters():
            p.grad = None
        m.train(self._training)
        del self._opt, self._state


@contextlib.contextmanager
def kept_rng() -> Iterator[None]:
    """Python's, NumPy's and torch's CPU generators as they were on entry, on exit."""
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])


def choose_for_run(cfg: Any, module: Any, dm: Any) -> PrecisionChoice:
    """``trainer.precision`` for this run: explicit, CUDA's rule, or measured on this CPU.

    Measured only where it can matter and is cheap to do right: ``auto`` on one CPU process
    whose flags allow fast bf16, without ``perf.compile`` (compiling would take minutes).
    Everywhere else :func:`choose_precision`'s rule decides.
    """
    requested = str(cfg.trainer.get("precision", "32-true"))
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    used, reason = choose_precision(requested, accelerator)
    if requested != AUTO or on_gpu(accelerator) or used != BF16:
        return PrecisionChoice(used, reason)
    perf = cfg.get("perf") or {}
    devices, nodes = cfg.trainer.get("devices", 1), cfg.trainer.get("num_nodes", 1)
    if str(devices) not in ("1", "auto") or int(nodes) != 1:
        return PrecisionChoice(used, reason + "; not measured under several processes")
    if perf.get("compile", False):
        return PrecisionChoice(used, reason + "; not measured under perf.compile")
    threshold = float(perf.get("bf16_min_speedup", 1.15))
    with kept_rng():  # the first batch and the probe's dropout draw from them
        batch = next(iter(dm.train_dataloader()))
        with StepProbe(module, batch) as probe:
            return measured_cpu_precision(
                probe, machine_signature(), model_signature(module, batch), threshold
            )
