"""``trainer.precision=auto``: the fastest precision this hardware runs well, and why.

bf16 autocast pays only where the matrix units take bf16 natively: on CPUs with AVX512-BF16
or AMX it ran ~2x faster than fp32, on AVX2/AVX512-only CPUs it ran 4-10x slower (measured,
``experiments/results/bench_cpu.md``). On CUDA, bf16 where the device has it, else fp16 with
gradient scaling (Lightning's ``16-mixed``).
"""

from __future__ import annotations

from pathlib import Path

import torch

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
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
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
