"""``tmc-export onnx ckpt_path=... out=model.onnx``: an ONNX file, its runtime notes, a parity check.

Every registered model exports with one signature: ``image (B, 3, S, S)`` float32 (the output
of :func:`~tmc_lightning.data.transforms.model_input`), ``input_ids (B, T)`` and
``attention_mask (B, T)`` int64 (text-free models take and ignore them), output ``logits
(B, 1, S, S)``; the batch is dynamic. Beside ``model.onnx``, ``model.json`` says what a runtime
needs to prepare inputs (size, normalisation, max words, the tokenizer file, the threshold) and
holds the parity check: ONNX Runtime on the CPU against PyTorch on the same inputs. Nothing is
written unless the export and the check both succeed.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tmc_lightning.data.transforms import MEAN, STD
from tmc_lightning.inference.predictor import Predictor

DEFAULT_OPSET = 18
MAX_MASK_DISAGREEMENT = 0.001  # share of pixels
EXAMPLE_TEXT = (
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
)


class ExportError(ValueError):
    """The model cannot be exported, or the exported file does not match PyTorch."""


class _Logits(torch.nn.Module):
    """The network as ONNX sees it: three tensors in, logits out."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, image, input_ids, attention_mask):
        return self.module(image, input_ids, attention_mask)


def example_inputs(predictor: Predictor, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``batch`` random gray images and the example prompt, through the predictor's own path."""
    rng = np.random.default_rng(seed)
    size = predictor.image_size
    grays = [rng.integers(0, 256, (size + 7 * i, size), dtype=np.uint8) for i in range(batch)]
    return predictor.tensors(grays, [EXAMPLE_TEXT] * batch)


def unsupported_operator(err: BaseException) -> str | None:
    """The operator an exporter error names, where it names one."""
    text = f"{err}\n{err.__cause__ or ''}"
    for pattern in (
        r"ONNX export of operator ([\w:.]+)",
        r"Exporting the operator '?([\w:.]+)'? to ONNX",
        r"[Uu]nsupported (?:FX nodes|operator)[^\w]*\{?'?([\w:.]+)",
        r"No (?:ONNX function found|decompositions? registered) for [^\w]*(?:OpOverload\(op=')?([\w:.]+)",
    ):
        m = re.search(pattern, text)
        if m:
            return m.group(1)
    return None


def _export(
    wrapper: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, opset: int
) -> None:
    names = ["image", "input_ids", "attention_mask"]
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            inputs,
            str(path),
            input_names=names,
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={n: {0: batch} for n in names},
            external_data=False,
        )


def parity(
    path: Path, wrapper: torch.nn.Module, inputs: tuple[torch.Tensor, ...]
) -> dict[str, Any]:
    """ONNX Runtime (CPU) against PyTorch on ``inputs``: logit difference and mask agreement."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError(
            "check=true needs onnxruntime (pip install onnxruntime, or the dev extra); "
            "check=false exports without the parity check"
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {
        "image": inputs[0].cpu().numpy(),
        "input_ids": inputs[1].cpu().numpy().astype(np.int64),
        "attention_mask": inputs[2].cpu().numpy().astype(np.int64),
    }
    got = session.run(["logits"], feed)[0]
    with torch.no_grad():
        want = wrapper(*inputs).float().cpu().numpy()
    if got.shape != want.shape:
        raise ExportError(f"ONNX output has shape {got.shape}, PyTorch {want.shape}")
    disagree = float(np.mean((got > 0) != (want > 0)))
    return {
        "batch": int(want.shape[0]),
        "max_abs_logit_diff": float(np.abs(got - want).max()),
        "mask_disagreement": disagree,
        "passed": disagree <= MAX_MASK_DISAGREEMENT,
    }


def export_onnx(
    ckpt_path: str,
    out: str,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Export ``ckpt_path`` to ``out`` (+ ``.json`` and the tokenizer); returns the JSON's content."""
    out_path = Path(out).expanduser()
    if out_path.suffix != ".onnx":
        raise ExportError(f"out={out}: name the file *.onnx")
    predictor = Predictor.from_checkpoint(ckpt_path)
    module = predictor.module.eval()
    module.hparams.compile = False
    wrapper = _Logits(module).eval()
    inputs = example_inputs(predictor, batch=2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.stem}.", dir=out_path.parent))
    try:
        onnx_tmp = tmp / out_path.name
        try:
            _export(wrapper, inputs, onnx_tmp, opset)
        except Exception as err:  # noqa: BLE001 - every exporter failure gets one sentence
            op = unsupported_operator(err)
            what = f"operator {op} has no ONNX conversion" if op else str(err).splitlines()[0]
            raise ExportError(
                f"{ckpt_path}: model {module.hparams.model_name!r} cannot be exported to ONNX "
                f"opset {opset}: {what}; nothing was written"
            ) from None
        info = notes(predictor, out_path, opset, threshold)
        if check:
            info["parity"] = parity(onnx_tmp, wrapper, example_inputs(predictor, batch=3, seed=1))
            if not info["parity"]["passed"]:
                raise ExportError(
                    f"ONNX and PyTorch masks differ on {100 * info['parity']['mask_disagreement']:.3f}% "
                    f"of pixels (limit {100 * MAX_MASK_DISAGREEMENT:.1f}%); nothing was written"
                )
        tok_name = info["tokenizer"]
        if tok_name:
            (tmp / tok_name).write_text(predictor.tokenizer.to_str())
        (tmp / f"{out_path.stem}.json").write_text(json.dumps(info, indent=2))
        for f in tmp.iterdir():  # the .onnx last: its presence means the export is complete
            if f.name != out_path.name:
                f.replace(out_path.parent / f.name)
        onnx_tmp.replace(out_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def notes(predictor: Predictor, out: Path, opset: int, threshold: float) -> dict[str, Any]:
    """What a runtime needs to turn an image and a prompt into this model's inputs."""
    import onnx

    hp = predictor.module.hparams
    return {
        "model": hp.model_name,
        "checkpoint_model_kwargs": dict(hp.model_kwargs),
        "opset": opset,
        "onnx_version": onnx.__version__,
        "torch_version": torch.__version__,
        "inputs": {
            "image": ["batch", 3, predictor.image_size, predictor.image_size],
            "input_ids": ["batch", predictor.max_words],
            "attention_mask": ["batch", predictor.max_words],
        },
        "outputs": {"logits": ["batch", 1, predictor.image_size, predictor.image_size]},
        "image_size": predictor.image_size,
        "preprocess": (
            "gray uint8 image -> resize to image_size x image_size (PIL bilinear) -> x / 255, "
            f"then (x - {MEAN}) / {STD} -> replicate to 3 channels"
        ),
        "normalisation": {"mean": MEAN, "std": STD},
        "max_words": predictor.max_words,
        "tokenizer": f"{out.stem}.tokenizer.json" if predictor.tokenizer else None,
        "uses_text": predictor.uses_text,
        "accepts_empty_prompt": predictor.accepts_empty_prompt,
        "laterality_convention": predictor.convention,
        "threshold": threshold,
        "postprocess": "sigmoid(logits) > threshold, resized bilinearly to the image's size",
    }
