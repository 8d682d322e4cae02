"""Latency per image: ONNX Runtime (CPU) against PyTorch eager, batch 1 and 8.

    .venv/bin/python experiments/onnx_cpu/run.py [--models tmc unet] [--repeats 20]

For each model (``small`` preset, 128 px, the embedded set): trains 2 steps so that a real
checkpoint exists, exports it with ``tmc-export onnx`` (parity check on), then times the
forward pass of both runtimes on the same inputs (after warm-up; median of ``--repeats``).
Writes experiments/onnx_cpu/onnx_cpu.md. Run nothing else on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(REPO))
    from tests.conftest import compose_cfg

    from tmc_lightning.export.onnx import _Logits, example_inputs, export_onnx
    from tmc_lightning.inference.predictor import Predictor
    from tmc_lightning.training.run import run
    from tmc_lightning.utils import provenance

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["tmc", "unet"])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="onnx_cpu-"))
    rows = []
    for model in args.models:
        cfg = compose_cfg([
            f"model={model}", "dataset.preset=small", "model.preset=small", "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2", "run_test=false", "callbacks.rich_progress=false",
            "trainer.enable_model_summary=false", f"dataset.cache_dir={work / 'cache'}",
        ])  # fmt: skip
        run(cfg, work / model)
        ckpt = work / model / "checkpoints" / "last.ckpt"
        info = export_onnx(str(ckpt), str(work / f"{model}.onnx"))
        predictor = Predictor.from_checkpoint(ckpt)
        wrapper = _Logits(predictor.module.eval()).eval()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(
            str(work / f"{model}.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        for batch in (1, 8):
            x, ids, mask = example_inputs(predictor, batch)
            feed = {"image": x.numpy(), "input_ids": ids.numpy().astype(np.int64),
                    "attention_mask": mask.numpy().astype(np.int64)}  # fmt: skip
            with torch.no_grad():
                pt = median_ms(lambda w=wrapper, a=(x, ids, mask): w(*a), args.repeats)
            ox = median_ms(lambda s=session, f=feed: s.run(["logits"], f), args.repeats)
            rows.append((model, batch, pt / batch, ox / batch, pt / ox, info["parity"]))
            print(rows[-1], flush=True)
    prov = provenance()
    lines = [
        "# ONNX Runtime vs PyTorch eager on the CPU (forward pass, per image)",
        "",
        f"Command: `{prov['command']}` (git {prov['git_commit']})  ",
        f"Machine: {prov['machine_line']}; onnxruntime {ort.__version__} (same threads)  ",
        "Models: `small` preset, 128 px, exported by `tmc-export onnx` (opset 18, parity check "
        "on); median of the timed repeats after 3 warm-up calls.",
        "",
        "| model | batch | PyTorch ms/image | ONNX Runtime ms/image | speed-up | parity: max abs logit diff, mask disagreement |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for model, batch, pt, ox, ratio, par in rows:
        lines.append(
            f"| {model} | {batch} | {pt:.1f} | {ox:.1f} | {ratio:.2f}x | "
            f"{par['max_abs_logit_diff']:.1e}, {100 * par['mask_disagreement']:.3f}% |"
        )
    out = REPO / "experiments" / "onnx_cpu" / "onnx_cpu.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
