"""Benchmark models, presets and speed variants: ``tmc-bench --models tmc --presets small``.

For every model x preset x variant: train-step throughput, inference latency at batch 1 and 8,
peak memory, the train step's achieved GFLOP/s against a large matmul measured in the same run
(same device and dtype), and the data pipeline's images/s against the step's consumption.
Writes ``<out>.json`` and ``<out>.md``; every row carries the command that reproduces it.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import traceback
from pathlib import Path
from typing import Any

import torch

from tmc_lightning.benchmarking import measure as bm
from tmc_lightning.benchmarking.table import format_row, markdown
from tmc_lightning.data.datamodule import datamodule_from_config
from tmc_lightning.training.allocator import set_up_memory
from tmc_lightning.utils import (
    device_for,
    git_commit,
    machine_info,
    machine_line,
    recorded_command,
    write_json_atomic,
)

NO_DATA = "none"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tmc-bench", description="Benchmark models, presets and speed variants."
    )
    p.add_argument("--models", nargs="+", default=["tmc", "lvit", "unet"])
    p.add_argument("--presets", nargs="+", default=["small"], help="tiny | small | paper")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["fp32", "channels_last", "eager_attn", "bf16", "compile"],
        help="fp32, or flags bf16 / channels_last / compile / eager_attn joined by '+'",
    )
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8, help="train batch size")
    p.add_argument("--infer-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-words", type=int, default=24)
    p.add_argument("--steps", type=int, default=10, help="timed steps (train and inference)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    p.add_argument(
        "--matmul-size",
        type=int,
        default=None,
        help="n of the n x n matmul (default 2048 on CPU, 4096 on CUDA)",
    )
    p.add_argument(
        "--matmul-seconds", type=float, default=2.0, help="matmul timing budget (best of 5)"
    )
    p.add_argument("--dataset", default="synthetic", help=f"conf/dataset name, or {NO_DATA}")
    p.add_argument("--data-root", default=None, help="dataset.root for real datasets")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loader workers (default: the dataset config's)",
    )
    p.add_argument("--data-batches", type=int, default=30, help="timed data-loader batches")
    p.add_argument(
        "--keep-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="glibc malloc reuses freed memory, as training does (perf.keep_freed_memory); "
        "--no-keep-freed-memory measures glibc's defaults",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile the train step (torch.profiler): top operators and op-family shares",
    )
    p.add_argument(
        "--data-override",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra overrides for the data, e.g. dataset.n_train=200",
    )
    p.add_argument(
        "--out", default="experiments/bench_cpu/bench", help="writes <out>.json, <out>.md"
    )
    args = p.parse_args(argv)
    for v in args.variants:
        bm.parse_variant(v)  # fail before any work
    if args.warmup < 1 and any("compile" in v for v in args.variants):
        p.error("--variants compile needs --warmup >= 1 (the first call compiles)")
    return args


def row_command(argv: list[str], model: str, preset: str, variant: str) -> str:
    """The full command narrowed to one model, preset and variant."""
    narrowed = ("--models", "--presets", "--variants")
    out, skip = ["tmc-bench", "--models", model, "--presets", preset, "--variants", variant], False
    for a in argv:
        if a.startswith("--"):
            skip = a in narrowed
            if skip or a.split("=", 1)[0] in narrowed:
                continue
        if not skip:
            out.append(a)
    return shlex.join(out)


def measure_data(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """Images/s of the real train DataLoader (with its augmentation) of a ``dataset=`` config."""
    dm = datamodule_from_config(settings)
    dm.prepare_data()
    dm.setup("fit")
    workers = settings.get("num_workers", 0)
    stats = bm.loader_throughput(dm.train_dataloader(), args.data_batches, skip=2 * workers)
    return {
        "dataset": args.dataset,
        "workers": workers,
        "augment": settings.get("augment"),
        **stats,
    }


def data_overrides(args: argparse.Namespace) -> list[str]:
    """The Hydra overrides that describe ``--dataset`` at the benchmark's size and batch."""
    return [
        f"dataset={args.dataset}",
        f"dataset.image_size={args.image_size}",
        f"dataset.batch_size={args.batch}",
        *([f"dataset.root={args.data_root}"] if args.data_root else []),
        *([f"dataset.num_workers={args.workers}"] if args.workers is not None else []),
        *args.data_override,
    ]


def bench_row(
    args: argparse.Namespace,
    device: torch.device,
    model: str,
    preset: str,
    flags: set[str],
    cache: dict[str, Any],
) -> dict[str, Any]:
    """All measurements of one model x preset x variant (raises on failure)."""
    kwargs = bm.bench_model_kwargs(model, preset, args.image_size, args.max_words)
    module = bm.build_module(model, kwargs, flags, device)
    vocab = kwargs.get("vocab_size") or bm.BERT_BASE_VOCAB  # None: a fetched BERT's own
    batch = bm.synthetic_batch(args.batch, args.image_size, args.max_words, vocab, device)
    row: dict[str, Any] = {"params_m": sum(p.numel() for p in module.parameters()) / 1e6}
    with bm.peak_memory(device) as mem:
        step_s, cost = bm.time_train_step(module, batch, flags, args.steps, args.warmup)
    row.update(
        train_step_ms=1000 * step_s,
        page_faults_per_step=cost["page_faults"],
        sys_s_per_step=cost["sys_s"],
        train_images_per_s=args.batch / step_s,
        peak_mem_mb=mem["peak_mb"],
        mem_delta_mb=mem["delta_mb"],
        mem_kind=mem["kind"],
    )
    if args.profile:
        row["profile"] = bm.profile_train_step(module, batch, flags)
    for b in args.infer_batches:
        inputs = bm.synthetic_batch(b, args.image_size, args.max_words, vocab, device)
        row[f"infer_ms_per_image_b{b}"] = bm.time_inference(
            module, inputs, flags, args.steps, args.warmup
        )
    key = f"{model}/{preset}"
    if key not in cache["flops"]:  # the same for every variant: count once, eagerly, in fp32
        eager = "compile" not in flags
        counter = module if eager else bm.build_module(model, kwargs, set(), device)
        cache["flops"][key] = bm.train_step_flops(counter, batch)
    dtype = torch.bfloat16 if "bf16" in flags else torch.float32
    dname = str(dtype).removeprefix("torch.")
    if dname not in cache["matmul"]:
        n = args.matmul_size or (4096 if device.type == "cuda" else 2048)
        cache["matmul"][dname] = bm.matmul_gflops(n, dtype, device, args.matmul_seconds)
    flops = cache["flops"][key]
    achieved = flops / step_s / 1e9
    row.update(
        train_gflop_per_step=flops / 1e9,
        train_gflops_per_s=achieved,
        matmul_dtype=dname,
        matmul_gflops_per_s=cache["matmul"][dname],
        frac_of_matmul=achieved / cache["matmul"][dname],
    )
    return row


def run(
    argv: list[str], args: argparse.Namespace, data_settings: dict[str, Any] | None
) -> dict[str, Any]:
    """Every row of the benchmark; ``data_settings``: the composed ``dataset=`` config, or None."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("high")  # as training does: TF32 on GPUs that have it
    device = device_for(args.device)
    machine = machine_info(device)
    machine["allocator"] = set_up_memory(
        args.keep_freed_memory, "glibc defaults (--no-keep-freed-memory)"
    )
    print(machine_line(machine), flush=True)
    data = measure_data(args, data_settings) if data_settings else None
    if data:
        print(
            f"data pipeline ({data['dataset']}, {data['workers']} workers): "
            f"{data['images_per_s']:.1f} images/s",
            flush=True,
        )
    cache: dict[str, Any] = {"flops": {}, "matmul": {}}
    rows = []
    for model in args.models:
        for preset in args.presets:
            for variant in args.variants:
                row: dict[str, Any] = {
                    "model": model,
                    "preset": preset,
                    "variant": variant,
                    "image_size": args.image_size,
                    "batch": args.batch,
                    "command": row_command(argv, model, preset, variant),
                }
                gc.collect()  # the previous row's model and optimizer state
                try:
                    row.update(
                        bench_row(args, device, model, preset, bm.parse_variant(variant), cache)
                    )
                    if data:
                        row["data_images_per_s"] = data["images_per_s"]
                        row["data_to_train_ratio"] = (
                            data["images_per_s"] / row["train_images_per_s"]
                        )
                except Exception as err:  # e.g. torch.compile without a compiler: report, go on
                    row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
                    traceback.print_exc()
                rows.append(row)
                print(format_row(row), flush=True)
    report = {
        "machine": machine,
        "machine_line": machine_line(machine),
        "command": recorded_command(["tmc-bench", *argv]),
        "git_commit": git_commit(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "flops_source": "torch.utils.flop_counter.FlopCounterMode on one train forward+backward "
        "(fp32, eager, SDPA on the math backend); matmuls, convolutions and attention only",
        "data": data,
        "matmul_gflops_per_s": cache["matmul"],
        "rows": rows,
    }
    out = Path(args.out)
    write_json_atomic(out.with_suffix(".json"), report)
    md = markdown(report)
    out.with_suffix(".md").write_text(md)
    print("\n" + md)
    return report
