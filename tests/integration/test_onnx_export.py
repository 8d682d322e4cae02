"""tmc-export onnx: every registered model, one signature, parity with PyTorch, nothing on failure."""

import json

import numpy as np
import pytest

from tests.helpers.config import tiny_cfg
from tmc_lightning.export import onnx as onnx_export
from tmc_lightning.export.onnx import ExportError, export_onnx
from tmc_lightning.models import list_models
from tmc_lightning.training.run import run

ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install -e '.[dev]')"
)

# In make test: UNet (6 s). TMC's graph (text encoder, cross-attention, ~5,000 ONNX nodes) takes
# 45 s to export, most of it in the exporter's decompositions and graph optimiser, so it runs
# with the other five registered models in make test-slow.
FAST = ("unet",)


def trained(cache_dir, tmp_path, model):
    run(
        tiny_cfg(
            cache_dir,
            f"model={model}",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "run_test=false",
        ),
        tmp_path / model,
    )
    return tmp_path / model / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    "model",
    [m if m in FAST else pytest.param(m, marks=pytest.mark.slow) for m in list_models()],
)
def test_every_model_exports_with_one_signature_and_matches_pytorch(cache_dir, tmp_path, model):
    ckpt = trained(cache_dir, tmp_path, model)
    out = tmp_path / "export" / f"{model}.onnx"
    info = export_onnx(str(ckpt), str(out))
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved == json.loads(json.dumps(info)) and saved["model"] == model
    assert saved["parity"]["passed"] and saved["parity"]["batch"] == 3  # exported at batch 2
    assert saved["parity"]["max_abs_logit_diff"] < 1e-3
    assert saved["opset"] == onnx_export.DEFAULT_OPSET and saved["max_words"] == 24
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "input_ids", "attention_mask"]
    assert [i.type for i in session.get_inputs()] == [
        "tensor(float)", "tensor(int64)", "tensor(int64)",
    ]  # fmt: skip
    size = saved["image_size"]
    feed = {
        "image": np.zeros((5, 3, size, size), np.float32),
        "input_ids": np.zeros((5, 24), np.int64),
        "attention_mask": np.ones((5, 24), np.int64),
    }
    assert session.run(["logits"], feed)[0].shape == (5, 1, size, size)  # dynamic batch
    if saved["uses_text"]:
        assert (out.parent / saved["tokenizer"]).is_file()


def test_a_failed_export_names_the_operator_and_writes_nothing(cache_dir, tmp_path, monkeypatch):
    ckpt = trained(cache_dir, tmp_path, "unet")
    out = tmp_path / "export" / "unet.onnx"

    def refuse(*args, **kwargs):
        raise RuntimeError(
            "Exporting the operator 'aten::grid_sampler_3d' to ONNX opset version 18 is not supported"
        )

    monkeypatch.setattr(onnx_export, "_export", refuse)
    with pytest.raises(ExportError, match=r"aten::grid_sampler_3d.*nothing was written"):
        export_onnx(str(ckpt), str(out))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    monkeypatch.undo()

    def drift(*args, **kwargs):
        return {"batch": 3, "max_abs_logit_diff": 3.0, "mask_disagreement": 0.02, "passed": False}

    monkeypatch.setattr(onnx_export, "parity", drift)
    with pytest.raises(ExportError, match=r"differ on 2\.000% of pixels"):
        export_onnx(str(ckpt), str(out))
    assert list(out.parent.iterdir()) == []
