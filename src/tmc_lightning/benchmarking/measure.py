"""The measurements behind ``tmc-bench``: train step, inference, memory, FLOPs, matmul, data.

Each function times one thing on one device and returns plain numbers; ``run.py`` chooses
what to run and writes the report.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from tmc_lightning import weights
from tmc_lightning.models import model_class
from tmc_lightning.training.module import SegmentationModule

# A variant is "fp32" or flags joined by "+"; eager_attn builds every attention as explicit
# softmax(QK^T)V instead of F.scaled_dot_product_attention (perf.sdpa=false).
FLAGS = ("bf16", "channels_last", "compile", "eager_attn")
BERT_BASE_VOCAB = 30522


def parse_variant(variant: str) -> set[str]:
    """``"fp32"`` -> set(); ``"bf16+channels_last"`` -> {"bf16", "channels_last"}."""
    flags = {f for f in variant.split("+") if f != "fp32"}
    unknown = flags - set(FLAGS)
    if unknown:
        raise ValueError(
            f"unknown variant flag(s) {sorted(unknown)} in {variant!r}; use fp32 or "
            f"flags from {FLAGS} joined by '+', e.g. bf16+channels_last"
        )
    return flags


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, flags: set[str]) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in flags)


# -- model and inputs -------------------------------------------------------------------------
def bench_model_kwargs(name: str, preset: str, image_size: int, max_words: int) -> dict[str, Any]:
    """Constructor kwargs for ``name`` at ``preset`` with random weights and no download.

    Pretrained encoders are built with random weights (same architecture, same cost). A hub
    text encoder becomes a random ``BertConfig()``, which is bert-base-uncased's architecture
    (the ``paper`` preset's encoder), so the benchmark runs offline.
    """
    cls = model_class(name)
    kw: dict[str, Any] = {"preset": preset, "image_size": image_size}
    preset_cfg = cls.presets[preset]
    if getattr(preset_cfg, "pretrained", False):
        kw["pretrained"] = False  # e.g. TransUNet's ResNet
    if getattr(getattr(preset_cfg, "vision", None), "pretrained", False):
        kw["vision"] = {"pretrained": False}
    if cls.uses_text:
        name = preset_cfg.text.name
        fetched = bool(name) and name.startswith(weights.PREFIX) and weights_here(name)
        hub_text = bool(name) and not fetched  # fetched weights (tmc-weights) load offline
        vocab = None if fetched else BERT_BASE_VOCAB if hub_text else 1000
        kw.update(max_words=max_words, vocab_size=vocab)
        if hub_text:  # transformers' BertConfig() defaults are bert-base's architecture
            kw["text"] = {"config": {"model_type": "bert"}}
    return kw


def weights_here(reference: str) -> bool:
    return weights.weights_path(reference.removeprefix(weights.PREFIX)).exists()


def build_module(
    name: str, model_kwargs: dict[str, Any], flags: set[str], device: torch.device
) -> SegmentationModule:
    """The training module (BCE + 0.1 x alignment, AdamW) under the variant's switches."""
    torch.manual_seed(0)
    module = SegmentationModule(
        model_name=name,
        model_kwargs=model_kwargs,
        dice_weight=0.0,
        align_weight=0.1,
        channels_last="channels_last" in flags,
        compile="compile" in flags,
        sdpa="eager_attn" not in flags,
    )
    return module.to(device)


def synthetic_batch(
    batch: int, image_size: int, max_words: int, vocab: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Random images, prompts of 12 words (rest padding) and binary masks."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch, max_words), generator=g)
    attention = torch.zeros(batch, max_words, dtype=torch.long)
    attention[:, : min(12, max_words)] = 1
    ids[attention == 0] = 0
    mask = (torch.rand(batch, 1, image_size, image_size, generator=g) > 0.9).float()
    out = {
        "image": torch.randn(batch, 3, image_size, image_size, generator=g),
        "input_ids": ids,
        "attention_mask": attention,
        "mask": mask,
    }
    return {k: v.to(device) for k, v in out.items()}


# -- timing -----------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def train_step_fn(
    module: SegmentationModule, batch: dict[str, torch.Tensor], flags: set[str]
) -> Callable[[], None]:
    """One training step: ``module._step`` loss, backward, clip at 1.0, AdamW step.

    The same work as a Lightning training step with conf/trainer's gradient_clip_val=1.0.
    """
    module.train()
    opt = module.configure_optimizers()["optimizer"]
    params = [p for p in module.parameters() if p.requires_grad]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(batch["image"].device, flags):
            loss, _, _ = module._step(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)  # as the module clips
        opt.step()

    return step


@contextlib.contextmanager
def os_cost() -> Iterator[dict[str, float]]:
    """This process's page faults and kernel CPU seconds inside the block (filled on exit)."""
    cost: dict[str, float] = {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    yield cost
    after = resource.getrusage(resource.RUSAGE_SELF)
    cost["page_faults"] = (after.ru_minflt + after.ru_majflt) - (
        before.ru_minflt + before.ru_majflt
    )
    cost["sys_s"] = after.ru_stime - before.ru_stime


def time_train_step(
    module: SegmentationModule,
    batch: dict[str, torch.Tensor],
    flags: set[str],
    steps: int,
    warmup: int,
) -> tuple[float, dict[str, float]]:
    """Seconds per training step (see ``train_step_fn``), and its page faults and kernel time.

    Page faults show memory handed back to the kernel and faulted in again each step
    (``perf.keep_freed_memory``).
    """
    step = train_step_fn(module, batch, flags)
    for _ in range(warmup):
        step()
    with os_cost() as cost:
        seconds = _timed(step, steps, 0, batch["image"].device)
    return seconds, {k: v / steps for k, v in cost.items()}


# Operator families of the profile summary, matched on the aten name in this order.
OP_FAMILIES = (
    ("attention", ("attention", "softmax", "_efficient_attention", "_flash")),
    ("matmul", ("mm", "addmm", "bmm", "matmul", "linear", "baddbmm")),
    ("conv", ("convolution", "conv2d", "conv_", "cudnn_conv", "mkldnn_conv")),
    ("norm", ("norm", "batch_norm", "layer_norm", "group_norm")),
    ("copy/layout", ("copy_", "contiguous", "clone", "to_copy", "cat", "index", "pad", "roll")),
    ("optimizer", ("_foreach", "adam", "lerp")),
)


def op_family(name: str) -> str:
    short = name.removeprefix("aten::").lower()
    for family, keys in OP_FAMILIES:
        if any(k in short for k in keys):
            return family
    return "elementwise/other"


def profile_train_step(
    module: SegmentationModule,
    batch: dict[str, torch.Tensor],
    flags: set[str],
    steps: int = 2,
    top: int = 12,
) -> dict[str, Any]:
    """Where a train step's time goes, from ``torch.profiler`` over ``steps`` steps.

    Returns the top operators by self time (ms per step and share) and the shares of operator
    families (attention, matmul, conv, norm, copies, optimizer, the rest).
    """
    # Kineto's own start/stop and GPU-probe lines would interleave with the table.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from torch.profiler import ProfilerActivity, profile

    step = train_step_fn(module, batch, flags)
    step()  # warm
    device = batch["image"].device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    # (operator, self time in us, calls) of every operator that took time, longest first.
    ops = sorted(
        ((e.key, getattr(e, attr), e.count) for e in prof.key_averages() if getattr(e, attr) > 0),
        key=lambda op: op[1],
        reverse=True,
    )
    total = sum(t for _, t, _ in ops) or 1.0
    families: dict[str, float] = {}
    for name, t, _ in ops:
        family = op_family(name)
        families[family] = families.get(family, 0.0) + t / total
    return {
        "time": "device" if device.type == "cuda" else "cpu",
        "ms_per_step": total / 1000 / steps,
        "top_ops": [
            {
                "op": name,
                "ms_per_step": t / 1000 / steps,
                "share": t / total,
                "calls_per_step": calls / steps,
            }
            for name, t, calls in ops[:top]
        ],
        "families": dict(sorted(families.items(), key=lambda kv: -kv[1])),
    }


@torch.no_grad()
def time_inference(
    module: SegmentationModule,
    batch: dict[str, torch.Tensor],
    flags: set[str],
    steps: int,
    warmup: int,
) -> float:
    """Milliseconds per image of an eval-mode forward pass over ``batch``."""
    module.eval()
    device = batch["image"].device

    def forward() -> None:
        with autocast(device, flags):
            module(batch["image"], batch["input_ids"], batch["attention_mask"])

    return 1000 * _timed(forward, steps, warmup, device) / batch["image"].shape[0]


def train_step_flops(module: SegmentationModule, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one training forward + backward, counted by ``FlopCounterMode``.

    Attention runs on the math backend while counting: the counter has no formula for the CPU
    flash kernel and would count its FLOPs as zero. Optimizer and element-wise ops are not
    counted (matmuls, convolutions and attention only).
    """
    module.train()
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel([SDPBackend.MATH]):
        loss, _, _ = module._step(batch)
        loss.backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_gflops(n: int, dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    """GFLOP/s of an (n x n) @ (n x n) product: the best of 5 windows of ``seconds / 5``.

    The best window, not the mean: the ceiling is what the device can do, and a window that
    shared the CPU with anything else would pull a mean down.
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=c)  # warm-up: kernel selection, page faults
    sync(device)
    best = 0.0
    for _ in range(5):
        reps, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=c)
            reps += 1
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 5:
                break
        best = max(best, 2 * n**3 * reps / elapsed / 1e9)
        if elapsed >= seconds:  # one product outlasts the budget (e.g. bf16 without hardware)
            break
    return best


# -- memory -----------------------------------------------------------------------------------
def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Yields a dict that holds, on exit, the peak memory inside the block.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the process's peak resident set size
    (VmHWM), reset on entry through /proc/self/clear_refs where Linux allows it; otherwise
    ``ru_maxrss``, the peak over the whole process so far (``kind`` says which).
    """
    out: dict[str, Any] = {}
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield out
        sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        out.update(kind="cuda_max_allocated", peak_mb=peak / 2**20, delta_mb=(peak - start) / 2**20)
        return
    start = _proc_status_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
        kind = "rss_peak"
    except OSError:
        kind = "rss_peak_process_lifetime"
    yield out
    peak = _proc_status_mb("VmHWM") if kind == "rss_peak" else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    out.update(kind=kind, peak_mb=peak, delta_mb=peak - start if start is not None else None)


# -- data pipeline ----------------------------------------------------------------------------
def loader_throughput(loader: DataLoader, batches: int, skip: int) -> dict[str, float]:
    """Images/s the loader delivers to a consumer that does nothing else.

    The first batch (worker start-up) and ``skip`` more (the workers' prefetched queue) are
    timed apart; the loader restarts its epoch when it runs out.
    """
    it = iter(loader)

    def next_batch() -> dict[str, Any]:
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    start = time.perf_counter()
    next_batch()
    first = time.perf_counter() - start
    for _ in range(skip):
        next_batch()
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        images += next_batch()["image"].shape[0]
    elapsed = time.perf_counter() - start
    return {
        "images_per_s": images / elapsed,
        "first_batch_s": first,
        "timed_batches": batches,
        "skipped_batches": skip,
    }
