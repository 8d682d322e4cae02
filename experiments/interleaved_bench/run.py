"""tmc-bench's CPU train step and inference for several models and variants, in alternation.

    python experiments/interleaved_bench/run.py --models tmc lvit --preset paper \
        --variants fp32 --rounds 8 --out experiments/interleaved_bench/interleaved_paper

On a shared VM the speed of the same step moved by up to 30% between runs minutes apart
(experiments/bench_cpu/bench_cpu.md), more than most switches change it. Here every variant's
module (every model x variant) is built once in one process, and each round times one training
step of each, then (after all rounds) one batch-1 inference of each, the order rotating every
round; the medians then compare them under the same conditions. The step is tmc-bench's
(``benchmarking/measure.py``: the module's loss, backward, clipping at 1.0, AdamW) on the same
random inputs, with glibc's malloc keeping freed memory as training does. The share of the
matmul ceiling uses tmc-bench's FLOP count and the mean of the matmul measured before and after.

Besides tmc-bench's flags a variant may carry ``nchw_wgrad``: the prototype of
``experiments/conv_layout/nchw_weight_grad.py`` (channels-last convolutions, weight gradients
from NCHW copies).
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from tmc_lightning.benchmarking import measure as bm
from tmc_lightning.training.allocator import keep_freed_memory
from tmc_lightning.utils import (
    git_commit,
    machine_info,
    machine_line,
    recorded_command,
    write_json_atomic,
)

PROTOTYPE = Path(__file__).resolve().parents[1] / "conv_layout" / "nchw_weight_grad.py"


def split_variant(variant: str) -> tuple[set[str], bool]:
    """tmc-bench's flags, and whether the ``nchw_wgrad`` prototype is asked for."""
    parts = variant.split("+")
    prototype = "nchw_wgrad" in parts
    rest = "+".join(p for p in parts if p != "nchw_wgrad") or "fp32"
    return bm.parse_variant(rest), prototype


@functools.cache
def prototype_module():
    spec = importlib.util.spec_from_file_location("nchw_weight_grad", PROTOTYPE)
    proto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(proto)
    return proto


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tmc"])
    p.add_argument("--preset", default="paper")
    p.add_argument("--variants", nargs="+", default=["fp32"], help="tmc-bench variants")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--max-words", type=int, default=24)
    p.add_argument("--rounds", type=int, default=8, help="timed steps of each variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each variant")
    p.add_argument("--out", required=True, help="writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    if len(args.variants) * len(args.models) < 2:
        p.error("give at least two models or variants to compare")
    for v in args.variants:
        try:
            split_variant(v)
        except ValueError as err:
            p.error(f"--variants {v}: {err}")
    return args


def interleaved(fns: dict[str, object], rounds: int) -> dict[str, list[float]]:
    """Milliseconds of each call, ``rounds`` calls per name, the order rotating each round."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(1000 * (time.perf_counter() - start))
    return times


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    base = statistics.median(next(iter(times.values())))
    return {
        n: {
            "median_ms": statistics.median(t),
            "min_ms": min(t),
            "max_ms": max(t),
            "vs_first": statistics.median(t) / base,
            "all_ms": t,
        }
        for n, t in times.items()
    }


def inference_fn(module, inputs: dict[str, torch.Tensor], flags: set[str]):
    def forward() -> None:
        with torch.no_grad(), bm.autocast(inputs["image"].device, flags):
            module(inputs["image"], inputs["input_ids"], inputs["attention_mask"])

    return forward


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    device = torch.device("cpu")
    machine = machine_info(device)
    machine["allocator"] = keep_freed_memory()
    print(machine_line(machine), flush=True)
    matmul_before = bm.matmul_gflops(2048, torch.float32, device, 2.0)
    modules, steps, forwards, flops = {}, {}, {}, {}
    for model in args.models:
        kwargs = bm.bench_model_kwargs(model, args.preset, args.image_size, args.max_words)
        vocab = kwargs.get("vocab_size") or bm.BERT_BASE_VOCAB
        batch = bm.synthetic_batch(args.batch, args.image_size, args.max_words, vocab, device)
        single = bm.synthetic_batch(1, args.image_size, args.max_words, vocab, device)
        for v in args.variants:
            name = f"{model} {v}"
            flags, prototype = split_variant(v)
            module = modules[name] = bm.build_module(model, kwargs, flags, device)
            if prototype:
                swapped = prototype_module().nchw_weight_grads(module)
                print(f"{name}: {swapped} convolutions swapped", flush=True)
            if model not in flops:  # as tmc-bench counts: eager, plain kernels
                plain = not prototype and "compile" not in flags
                counter = module if plain else bm.build_module(model, kwargs, set(), device)
                flops[model] = bm.train_step_flops(counter, batch)
            steps[name] = bm.train_step_fn(module, batch, flags)
            forwards[name] = inference_fn(module, single, flags)
            for _ in range(args.warmup):
                steps[name]()
            gc.collect()
            print(f"{name}: built and warmed up", flush=True)
    train = summary(interleaved(steps, args.rounds))
    for m in modules.values():
        m.eval()
    for f in forwards.values():
        f()  # warm-up in eval mode
    inference = summary(interleaved(forwards, args.rounds))
    matmul_after = bm.matmul_gflops(2048, torch.float32, device, 2.0)
    ceiling = (matmul_before + matmul_after) / 2
    for name, t in train.items():
        gflop = flops[name.split(" ")[0]] / 1e9
        t["gflop_per_step"] = gflop
        t["share_of_matmul"] = gflop / (t["median_ms"] / 1000) / ceiling

    command = recorded_command()
    report = {
        "command": command,
        "git_commit": git_commit(),
        "machine": machine,
        "machine_line": machine_line(machine),
        "settings": vars(args),
        "matmul_gflops_per_s": {"before": matmul_before, "after": matmul_after},
        "train_step": train,
        "inference_b1": inference,
    }
    out = Path(args.out)
    write_json_atomic(out.with_suffix(".json"), report)
    lines = [
        f"# Interleaved: {' '.join(args.models)} `{args.preset}`, {args.image_size} px",
        "",
        f"Machine: {machine_line(machine)}",
        "",
        f"Command: `{command}` (git {report['git_commit']})",
        "",
        f"2048^3 fp32 matmul: {matmul_before:.0f} GFLOP/s before, {matmul_after:.0f} after.",
        "",
        f"| model variant | train step ms, batch {args.batch}: median | min | max | vs first "
        "| GFLOP/step | % of matmul | inference ms, batch 1: median | vs first |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in train.items():
        i = inference[name]
        lines.append(
            f"| {name} | {t['median_ms']:.0f} | {t['min_ms']:.0f} | {t['max_ms']:.0f} "
            f"| {t['vs_first']:.2f}x | {t['gflop_per_step']:.1f} | {t['share_of_matmul']:.0%} "
            f"| {i['median_ms']:.0f} | {i['vs_first']:.2f}x |"
        )
    lines += [
        "",
        f"{args.rounds} rounds; each round one train step of each row, the order rotating. "
        "% of matmul: the median step's GFLOP/s over the mean of the two matmul figures.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
