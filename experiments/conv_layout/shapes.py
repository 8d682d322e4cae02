"""Each 3x3 convolution of the `paper` U-Net alone: NCHW against channels-last, per kernel.

    python experiments/conv_layout/shapes.py --out experiments/conv_layout/conv_layout_shapes

Times the forward, the input gradient and the weight gradient of every 3x3 convolution shape of
LViT's / TMC's ``paper`` CNN (widths 64-128-256-512-512 at 224 px, batch 2; TMC adds the
injected channels to the down path) in both memory layouts, as oneDNN runs them through
``torch.ops.aten.convolution_backward``, and prints GFLOP/s beside a 2048^3 fp32 matmul of the
same run (tmc-bench's ceiling: ``benchmarking.measure.matmul_gflops``). Best of 3 after one
untimed call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tmc_lightning.benchmarking.measure import matmul_gflops
from tmc_lightning.utils import provenance

# (in, out, side) of the paper CNN's 3x3 convolutions: encoder, then decoder (upsampled + skip).
SHAPES = [
    (3, 64, 224), (64, 64, 224),
    (64, 128, 112), (128, 128, 112),
    (128, 256, 56), (256, 256, 56),
    (256, 512, 28), (512, 512, 28),
    (512, 512, 14),
    (1024, 256, 28), (256, 256, 28),
    (512, 128, 56), (128, 128, 56),
    (256, 64, 112), (64, 64, 112),
    (128, 64, 224), (64, 64, 224),
]  # fmt: skip
KERNELS = ("forward", "input grad", "weight grad")


def best_ms(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def kernels(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> dict[str, float]:
    """Milliseconds of the forward, input gradient and weight gradient of a padded 3x3 conv."""

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(
            g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask
        )

    return {
        "forward": best_ms(lambda: F.conv2d(x, w, padding=1)),
        "input grad": best_ms(backward([True, False, False])),
        "weight grad": best_ms(backward([False, True, False])),
    }


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--out", required=True, help="writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    matmul = matmul_gflops(2048, torch.float32, torch.device("cpu"), 2.0)
    rows = []
    for cin, cout, side in SHAPES:
        gflop = 2 * args.batch * side * side * cout * cin * 9 / 1e9
        x = torch.randn(args.batch, cin, side, side)
        w = torch.randn(cout, cin, 3, 3) * 0.05
        g = torch.randn(args.batch, cout, side, side)
        row = {"in": cin, "out": cout, "side": side, "gflop": gflop}
        for layout, fmt in (
            ("nchw", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            ms = kernels(*(t.contiguous(memory_format=fmt) for t in (x, w, g)))
            row[layout] = {k: {"ms": v, "gflops": gflop / v * 1e3} for k, v in ms.items()}
        rows.append(row)
        print(
            f"{cin}->{cout} at {side}: "
            + "  ".join(
                f"{k} {row['nchw'][k]['gflops']:.0f}/{row['channels_last'][k]['gflops']:.0f}"
                for k in KERNELS
            ),
            flush=True,
        )
    totals = {
        layout: {k: sum(r[layout][k]["ms"] for r in rows) for k in KERNELS}
        for layout in ("nchw", "channels_last")
    }
    prov = provenance()
    command, machine = prov["command"], prov["machine_line"]
    out = Path(args.out)
    report = {**prov, "matmul_gflops": matmul, "rows": rows}
    report["totals_ms"] = totals
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# 3x3 convolutions of the `paper` CNN alone: GFLOP/s, NCHW / channels-last",
        "",
        f"Command: `{command}` (git {prov['git_commit']}); {machine}; 2048^3 fp32 matmul "
        f"{matmul:.0f} GFLOP/s.",
        "",
        "| conv | GFLOP | forward | input grad | weight grad |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = " | ".join(
            f"{r['nchw'][k]['gflops']:.0f} / {r['channels_last'][k]['gflops']:.0f}" for k in KERNELS
        )
        lines.append(f"| {r['in']}->{r['out']} at {r['side']} | {r['gflop']:.2f} | {cells} |")
    lines.append(
        "| **total ms** | | "
        + " | ".join(f"{totals['nchw'][k]:.0f} / {totals['channels_last'][k]:.0f}" for k in KERNELS)
        + " |"
    )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
