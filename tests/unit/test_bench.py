"""tmc-bench on the tiny preset, and the perf switches (channels_last, compile) of the module."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers.models import SIZE, WORDS, bench_module
from tmc_lightning.benchmarking.measure import bench_model_kwargs, parse_variant, synthetic_batch
from tmc_lightning.cli.bench import main as bench_main
from tmc_lightning.training.module import SegmentationModule


def test_bench_runs_on_tiny_and_writes_json(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "bench_tiny"
    argv = ["--models", "tmc", "--presets", "tiny", "--image-size", str(SIZE), "--batch", "2"]
    argv += ["--variants", "fp32", "channels_last+eager_attn", "--steps", "1", "--warmup", "1"]
    argv += ["--profile"]
    argv += ["--matmul-size", "256", "--matmul-seconds", "0.05", "--data-batches", "2"]
    argv += ["--out", str(out), "--data-override", f"dataset.cache_dir={cache_dir}"]
    argv += ["dataset.n_train=8", "dataset.n_val=4", "dataset.n_test=4"]
    bench_main(argv)

    report = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".md").read_text().startswith("# tmc-bench")
    assert report["machine"]["torch"] == torch.__version__
    assert report["data"]["images_per_s"] > 0
    assert report["matmul_gflops_per_s"]["float32"] > 0
    assert [r["variant"] for r in report["rows"]] == ["fp32", "channels_last+eager_attn"]
    md = out.with_suffix(".md").read_text()
    assert "### tmc tiny channels_last+eager_attn" in md
    for row in report["rows"]:
        assert "error" not in row, row.get("error")
        assert (
            row["command"].startswith("tmc-bench ")
            and "--variants " + row["variant"] in row["command"]
        )
        for key in (
            "train_images_per_s",
            "infer_ms_per_image_b1",
            "infer_ms_per_image_b8",
            "peak_mem_mb",
            "train_gflop_per_step",
            "train_gflops_per_s",
            "matmul_gflops_per_s",
            "frac_of_matmul",
            "data_to_train_ratio",
        ):
            assert row[key] > 0, key
        prof = row["profile"]
        assert prof["ms_per_step"] > 0 and 0 < len(prof["top_ops"]) <= 12
        assert sum(prof["families"].values()) == pytest.approx(1.0)
        assert {"matmul", "conv"} <= set(prof["families"])


def test_bench_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError, match="bf16"):
        parse_variant("fp16")
    assert parse_variant("bf16+channels_last") == {"bf16", "channels_last"}


def test_channels_last_and_eager_compile_switch_keep_the_loss() -> None:
    batch = synthetic_batch(3, SIZE, WORDS, vocab=1000, device=torch.device("cpu"))
    losses = {}
    for name, perf in {
        "default": {},
        "channels_last": {"channels_last": True},
        "compile_off": {"compile": False},
    }.items():
        module = bench_module(**perf)
        module.train()
        losses[name] = module._step(batch)[0].item()
    conv = bench_module(channels_last=True).model.segmenter.inc.net[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert losses["channels_last"] == pytest.approx(losses["default"], rel=1e-4, abs=1e-5)
    assert losses["compile_off"] == pytest.approx(losses["default"], rel=1e-6)


def test_channels_last_checkpoint_keeps_state_dict_keys(tmp_path: Path) -> None:
    module = bench_module(channels_last=True)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path = tmp_path / "cl.ckpt"
    trainer.save_checkpoint(path)

    saved = torch.load(path, weights_only=True)["state_dict"]
    assert set(saved) == set(bench_module().state_dict())
    assert not any("_orig_mod" in k for k in saved)
    reloaded = SegmentationModule.load_from_checkpoint(path)
    assert reloaded.hparams.channels_last
    for k, v in module.state_dict().items():
        assert torch.equal(reloaded.state_dict()[k], v), k


@pytest.mark.parametrize("name", ["tmc", "lvit"])
def test_eager_attention_matches_sdpa_and_never_calls_it(name, monkeypatch) -> None:
    """perf.sdpa=false (tmc-bench eager_attn) computes the same network without SDPA.

    The batch pads half of every prompt, so equal losses also check the eager path's masks
    (the text encoder's additive mask, the cross-attention's key mask).
    """
    batch = synthetic_batch(3, SIZE, WORDS, vocab=1000, device=torch.device("cpu"))
    losses = {}
    for sdpa in (True, False):
        torch.manual_seed(0)
        module = SegmentationModule(
            model_name=name,
            model_kwargs=bench_model_kwargs(name, "tiny", SIZE, WORDS),
            align_weight=0.1,
            sdpa=sdpa,
        ).eval()
        if not sdpa:

            def refuse(*args, **kwargs):
                raise AssertionError("F.scaled_dot_product_attention called with sdpa=False")

            monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", refuse)
        with torch.no_grad():
            losses[sdpa] = module._step(batch)[0].item()
    assert losses[False] == pytest.approx(losses[True], rel=1e-5, abs=1e-6)
    from tmc_lightning.models.attention import sdpa_enabled

    assert sdpa_enabled()  # the switch does not leak past construction


def test_optimizer_uses_the_fused_kernel_on_cpu() -> None:
    opt = bench_module().configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer=cpu"], True),  # small preset on the embedded default
        (["trainer=cpu", "dataset.preset=paper"], False),
        (["trainer=gpu", "dataset.preset=paper"], True),
        (["trainer=cpu", "dataset.preset=paper", "perf.channels_last=true"], True),
        (["trainer=cpu", "perf.channels_last=false"], False),
    ],
)
def test_channels_last_auto_follows_the_measurements(overrides, expected) -> None:
    from tests.helpers.config import compose_cfg
    from tmc_lightning.training.factory import use_channels_last

    cfg = compose_cfg(overrides)
    assert OmegaConf.select(cfg, "perf.channels_last") in ("auto", True, False)
    assert use_channels_last(cfg) is expected
