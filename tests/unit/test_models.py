"""TMC, LViT and UNet: shapes, gradients, masking, ablation switches, encoder loading."""

import time

import pytest
import torch

from tmc_lightning.hub import EncoderUnavailableError
from tmc_lightning.models import build_model, model_class

VOCAB = 60


def inputs(batch=2, size=64, words=24, valid=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=g)
    ids = torch.randint(5, VOCAB, (batch, words), generator=g)
    mask = torch.zeros(batch, words, dtype=torch.long)
    mask[:, :valid] = 1
    ids[:, valid:] = 0
    return image, ids, mask


def tiny(name="tmc", **kw):
    torch.manual_seed(0)
    if name == "unet":
        return build_model("unet", preset="tiny", **kw)
    return build_model(name, preset="tiny", image_size=64, vocab_size=VOCAB, **kw)


@pytest.mark.parametrize("name", ["unet", "lvit", "tmc"])
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_output_shape_per_preset(name, preset):
    kw = {} if name == "unet" else {"image_size": 64, "vocab_size": VOCAB}
    model = build_model(name, preset=preset, **kw).eval()
    image, ids, mask = inputs()
    assert model(image, ids, mask).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name", ["unet", "lvit", "tmc"])
def test_every_trainable_parameter_gets_a_gradient(name):
    model = tiny(name)
    image, ids, mask = inputs(batch=3)
    out = model.forward_features(image, ids, mask)
    loss = out.logits.mean() + sum(
        (f.z_v * f.z_l).sum() * f.log_temperature + f.bias for f in out.align
    )
    loss.backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"no gradient for {missing[:10]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_frozen_text_encoder_gets_no_gradient():
    model = tiny("tmc", text={"freeze": True})
    image, ids, mask = inputs()
    model(image, ids, mask).mean().backward()
    text_params = list(model.text.parameters())
    assert text_params and all(not p.requires_grad and p.grad is None for p in text_params)
    assert all(p.grad is not None for p in model.segmenter.parameters())


@pytest.mark.parametrize("name", ["lvit", "tmc"])
def test_padded_tokens_do_not_change_the_output(name):
    model = tiny(name).eval()
    image, ids, mask = inputs()
    other = ids.clone()
    other[:, 9:] = torch.randint(5, VOCAB, other[:, 9:].shape)  # garbage where the mask is 0
    with torch.no_grad():
        a, b = model(image, ids, mask), model(image, other, mask)
    torch.testing.assert_close(a, b)
    with torch.no_grad():  # while a real word does change it
        changed = ids.clone()
        changed[:, 3] = (changed[:, 3] + 1) % VOCAB
        assert not torch.allclose(a, model(image, changed, mask))


def _names(model):
    return {n for n, _ in model.named_parameters()}


def test_mcm_false_removes_exactly_the_cross_attention():
    full, no_mcm = tiny("tmc"), tiny("tmc", mcm=False)
    removed = _names(full) - _names(no_mcm)
    assert removed and all(n.startswith("mcm.") for n in removed)
    assert _names(no_mcm) <= _names(full)
    assert sum(p.numel() for p in full.mcm.parameters()) == (
        sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in no_mcm.parameters())
    )


@pytest.mark.parametrize("size", [64, 96])
def test_resized_injection_never_builds_the_features_at_full_resolution(size, monkeypatch):
    """``resized`` embeds each MCM map at the resolution that consumes it; ``full`` upsamples
    it to the U-Net level first (the layout of older checkpoints). Both segment."""
    import torch.nn.functional as F

    from tmc_lightning.models import segmenter

    made = []  # (channels, height, width) of every injected map that was resized
    real = F.interpolate

    def spy(x, *a, **kw):
        out = real(x, *a, **kw)
        made.append(tuple(out.shape[1:]))
        return out

    monkeypatch.setattr(segmenter.F, "interpolate", spy)
    image, ids, mask = inputs(size=size)
    for mode in ("resized", "full"):
        torch.manual_seed(0)
        model = build_model(
            "tmc", preset="tiny", image_size=size, vocab_size=VOCAB, injection=mode
        ).eval()
        seg = model.segmenter
        inj = [lin.out_features for lin in model.inject]
        widths = [stage.embed.out_channels for stage in seg.vit_down]
        made.clear()
        assert model(image, ids, mask).shape == (2, 1, size, size)
        for k in range(4):
            level = size >> k  # the U-Net level that stage k joins
            full_size = [m for m in made if m[0] == inj[k] and m[1] == level]
            if mode == "full":
                assert seg.vit_down[k].embed.in_channels == widths[k] + inj[k]
                assert full_size, f"full: stage {k} is upsampled to {level}px"
            else:
                assert seg.vit_down[k].embed.in_channels == widths[k]
                assert seg.vit_inject[k].kernel_size[0] == [4, 2, 1, 1][k]
                assert not full_size, f"resized: stage {k} was built at {level}px"
        if mode == "full":
            assert not any(n.startswith("segmenter.vit_inject") for n in _names(model))


@pytest.mark.parametrize(
    "switch", [{"mcm": False}, {"align": False}, {"injection": "full"}, {"text": {"freeze": True}}]
)
def test_ablation_rows_start_their_shared_parts_from_the_same_weights(switch):
    """Each part's random init comes from (seed, its name): switching a module off or changing
    the injection leaves every other parameter's initial value as it was."""
    a, b = tiny("tmc"), tiny("tmc", **switch)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    shared = [n for n in pa.keys() & pb.keys() if pa[n].shape == pb[n].shape]
    differ = {n for n in shared if not torch.equal(pa[n], pb[n])}
    changed = {n for n in pa.keys() & pb.keys() if pa[n].shape != pb[n].shape}
    if "injection" in switch:  # only the ViT down path's patch embeddings (their fan-in)
        assert changed == {f"segmenter.vit_down.{k}.embed.weight" for k in range(4)}
        differ -= {f"segmenter.vit_down.{k}.embed.bias" for k in range(4)}
    assert len(shared) > 100 and not differ, sorted(differ)[:5]
    torch.manual_seed(1)
    other = build_model("tmc", preset="tiny", image_size=64, vocab_size=VOCAB)
    assert not torch.equal(dict(other.named_parameters())["segmenter.decoder.head.weight"],
                           pa["segmenter.decoder.head.weight"])  # fmt: skip


def test_unknown_injection_names_the_key():
    with pytest.raises(ValueError, match="model.injection='concat'.*resized, full"):
        tiny("tmc", injection="concat")


def test_align_false_removes_exactly_the_alignment_heads():
    full, no_align = tiny("tmc"), tiny("tmc", align=False)
    removed = _names(full) - _names(no_align)
    assert removed and all(n.startswith("align_heads.") for n in removed)
    assert _names(no_align) <= _names(full)
    image, ids, mask = inputs()
    assert len(full.forward_features(image, ids, mask).align) == 4
    assert no_align.forward_features(image, ids, mask).align == []


def test_attention_maps_per_stage_and_word():
    model = tiny("tmc").eval()
    image, ids, mask = inputs(valid=9)
    with torch.no_grad():
        out = model.forward_features(image, ids, mask, need_attention=True)
    assert [tuple(a.shape) for a in out.attentions] == [
        (2, 24, 16, 16),
        (2, 24, 8, 8),
        (2, 24, 4, 4),
        (2, 24, 2, 2),
    ]
    for a in out.attentions:
        flat = a.flatten(2)  # (B, T, N): each visual token's weights over words sum to 1
        torch.testing.assert_close(flat.sum(1), torch.ones_like(flat.sum(1)))
        assert flat[:, 9:].abs().max() == 0  # padded words get no attention
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model(image, ids, mask))


def test_paper_preset_builds_with_random_weights_and_runs_forward():
    bert_base = {
        "name": None,
        "pretrained": False,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    }
    model = build_model(
        "tmc",
        preset="paper",
        image_size=224,
        vocab_size=30522,
        vision={"pretrained": False},
        text=bert_base,
    ).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 130e6 < n_params < 260e6  # Swin-T (28M) + BERT-base (110M) + dual-U and MCM
    assert model.vision.channels == [96, 192, 384, 768]
    image, ids, mask = inputs(batch=1, size=224, words=24)
    ids = ids.clamp(max=30521)
    with torch.no_grad():
        assert model(image, ids, mask).shape == (1, 1, 224, 224)


def test_local_directory_text_encoder_and_tokenizer(tmp_path):
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from tmc_lightning.data.text import build_wordpiece, encode, load_pretrained

    tok = build_wordpiece(["Unilateral pulmonary infection, one infected area, lower left lung."])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(tmp_path)
    torch.manual_seed(1)
    bert = BertModel(
        BertConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        add_pooling_layer=False,
    )
    bert.save_pretrained(tmp_path)

    model = build_model(
        "tmc", preset="tiny", image_size=64, text={"name": str(tmp_path), "pretrained": True}
    )
    torch.testing.assert_close(
        model.text.model.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight
    )
    loaded = load_pretrained(str(tmp_path))
    ids, mask = encode(loaded, ["lower left lung"], 24)
    assert ids[0, 0] == loaded.token_to_id("[CLS]") and mask.sum() == 5
    image = torch.randn(1, 3, 64, 64)
    assert model(image, ids, mask).shape == (1, 1, 64, 64)


def test_offline_hub_name_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(EncoderUnavailableError) as err:
        build_model(
            "tmc",
            preset="tiny",
            image_size=64,
            text={"name": "bert-base-uncased", "pretrained": True},
        )
    assert time.time() - start < 15
    msg = str(err.value)
    assert "bert-base-uncased" in msg and "model.text.name" in msg and "HF_HUB_OFFLINE" in msg


def test_missing_local_directory_is_a_clear_error(tmp_path):
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(EncoderUnavailableError, match="local directory"):
        build_model(
            "tmc", preset="tiny", image_size=64, text={"name": str(empty), "pretrained": True}
        )


def test_top_level_switches_reach_the_encoders():
    """model.pretrained / model.freeze_text are resolved by the training factory, once."""
    from tests.helpers.config import compose_cfg
    from tmc_lightning.training.factory import model_kwargs

    name, kwargs = model_kwargs(compose_cfg(["model.preset=paper", "model.pretrained=false"]))
    cfg = model_class(name).make_config(kwargs)
    assert not cfg.text.pretrained and not cfg.vision.pretrained
    name, kwargs = model_kwargs(compose_cfg(["model.preset=paper"]))
    assert model_class(name).make_config(kwargs).text.pretrained
    _, kwargs = model_kwargs(compose_cfg(["model.preset=tiny", "model.freeze_text=true"]))
    frozen = tiny("tmc", text=kwargs["text"])
    assert not any(p.requires_grad for p in frozen.text.parameters())
    with pytest.raises(ValueError, match=r"\+model.text.name"):
        tiny("tmc", text={"pretrained": True})  # tiny's text encoder has no name to load
    with pytest.raises(EncoderUnavailableError, match="model.pretrained=false"):
        tiny("tmc", vision={"pretrained": True})  # offline: the Swin weights cannot be fetched


def test_naming_another_text_encoder_loads_it_unresized(tmp_path):
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=48,
            num_hidden_layers=4,
            num_attention_heads=3,
            intermediate_size=96,
        ),
        add_pooling_layer=False,
    )
    bert.save_pretrained(tmp_path)
    model = build_model(
        "tmc", preset="small", image_size=64, vocab_size=50, text={"name": str(tmp_path)}
    )
    assert model.text.hidden_size == 48  # not the small preset's 64
    torch.testing.assert_close(
        model.text.model.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight
    )


def test_odd_widths_pick_a_dividing_head_count():
    model = build_model("lvit", preset="tiny", image_size=64, vocab_size=VOCAB, base_width=10)
    image, ids, mask = inputs()
    assert model(image, ids, mask).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("channels, patch", [(16, 4), (24, 16), (8, 2), (3, 16)])
def test_patch_embedding_is_the_convolution_in_fp32_and_right_in_bf16(channels, patch):
    """oneDNN's bf16 convolution with kernel = stride gave wrong values for 16 or 24 input
    channels on an AMX CPU (torch 2.14.1); the patch embedding is a matmul and stays right."""
    import torch.nn.functional as F

    from tmc_lightning.models.segmenter import PatchEmbed

    torch.manual_seed(0)
    embed = PatchEmbed(channels, 32, patch)
    x = torch.randn(2, channels, 4 * patch + 3, 4 * patch)  # a remainder row, as a conv drops
    ref = F.conv2d(x.double(), embed.weight.double(), embed.bias.double(), stride=patch)
    with torch.no_grad():
        torch.testing.assert_close(embed(x).double(), ref, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = embed(x).double()
    assert ((low - ref).norm() / ref.norm()) < 0.02


@pytest.mark.parametrize("name", ["lvit", "tmc"])
def test_bf16_autocast_forward_matches_fp32(name):
    """The `small` widths (16 channels at the first ViT patch embedding) in bf16 autocast give
    the fp32 logits up to rounding: a model trained under bf16 scores the same in fp32."""
    torch.manual_seed(0)
    model = build_model(name, preset="small", image_size=64, vocab_size=VOCAB).eval()
    image, ids, mask = inputs()
    with torch.no_grad():
        full = model(image, ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(image, ids, mask).float()
    assert ((low - full).norm() / full.norm()) < 0.05
