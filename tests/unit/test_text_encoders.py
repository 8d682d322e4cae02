"""Text-encoder swaps: BERT-like and CLIP text towers from local folders, the text_encoder group."""

import time

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers.config import compose_cfg
from tmc_lightning.data.text import build_wordpiece, encode, load_pretrained
from tmc_lightning.hub import EncoderUnavailableError
from tmc_lightning.models import build_model
from tmc_lightning.models.configs import TextConfig
from tmc_lightning.models.encoders import StagedTextEncoder
from tmc_lightning.training.factory import model_kwargs, tokenizer_for

TEXTS = [
    "Unilateral pulmonary infection, one infected area, lower left lung.",
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
]
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


def _save_tokenizer(folder):
    from transformers import PreTrainedTokenizerFast

    tok = build_wordpiece(TEXTS)
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(folder)
    return tok


@pytest.fixture(scope="module")
def encoder_dirs(tmp_path_factory):
    """Tiny random BERT, CLIP text model and full CLIP (text + vision), each with a tokenizer."""
    from transformers import (
        BertConfig,
        BertModel,
        CLIPConfig,
        CLIPModel,
        CLIPTextConfig,
        CLIPTextModel,
    )

    dirs = {k: tmp_path_factory.mktemp(k) for k in ("bert", "clip", "clip_full")}
    tok = _save_tokenizer(dirs["bert"])
    for k in ("clip", "clip_full"):
        _save_tokenizer(dirs[k])
    vocab = tok.get_vocab_size()
    # [CLS]/[SEP] play CLIP's start/end-of-text tokens, so its own pooling finds the end.
    clip_cfg = {
        "vocab_size": vocab,
        "max_position_embeddings": 64,
        "bos_token_id": tok.token_to_id("[CLS]"),
        "eos_token_id": tok.token_to_id("[SEP]"),
        "pad_token_id": tok.token_to_id("[PAD]"),
        **TINY,
    }
    torch.manual_seed(0)
    BertModel(
        BertConfig(vocab_size=vocab, max_position_embeddings=64, **TINY), add_pooling_layer=False
    ).save_pretrained(dirs["bert"])
    CLIPTextModel(CLIPTextConfig(**clip_cfg)).save_pretrained(dirs["clip"])
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 16,
    }
    full = CLIPModel(CLIPConfig(text_config=clip_cfg, vision_config=vision, projection_dim=16))
    full.save_pretrained(dirs["clip_full"])
    return dirs


def _batch(folder, size=64):
    ids, mask = encode(load_pretrained(str(folder)), TEXTS, 24)
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)), ids, mask


@pytest.mark.parametrize("kind", ["bert", "clip", "clip_full"])
@pytest.mark.parametrize("name", ["tmc", "lvit"])
def test_tiny_models_run_with_each_local_encoder(encoder_dirs, name, kind):
    folder = encoder_dirs[kind]
    torch.manual_seed(0)
    model = build_model(
        name,
        preset="tiny",
        image_size=64,
        text={"name": str(folder), "pretrained": True},
    )
    assert model.text.is_clip == kind.startswith("clip")
    assert model.text.hidden_size == 32
    image, ids, mask = _batch(folder)
    out = model.forward_features(image, ids, mask)
    assert out.logits.shape == (2, 1, 64, 64)
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


@pytest.mark.parametrize("kind", ["bert", "clip", "clip_full"])
def test_pretrained_weights_are_the_folders(encoder_dirs, kind):
    from transformers import AutoModel, CLIPTextModel

    folder = encoder_dirs[kind]
    enc = StagedTextEncoder(TextConfig(name=str(folder), pretrained=True))
    ref = (CLIPTextModel if kind.startswith("clip") else AutoModel).from_pretrained(folder)
    ours, theirs = dict(enc.model.named_parameters()), dict(ref.named_parameters())
    shared = [k for k in theirs if k in ours]
    assert len(shared) == len(ours) > 10
    for k in shared:
        torch.testing.assert_close(ours[k], theirs[k])


@pytest.mark.parametrize("kind", ["bert", "clip"])
def test_stages_reproduce_the_encoders_own_forward(encoder_dirs, kind):
    """Run stage by stage, the encoder gives its library forward's states and sentence token."""
    folder = encoder_dirs[kind]
    enc = StagedTextEncoder(TextConfig(name=str(folder), pretrained=True)).eval()
    _, ids, mask = _batch(folder)
    assert mask[0].sum() < mask[1].sum()  # one padded text, so masking matters
    with torch.no_grad():
        x, bias = enc.embed(ids), enc.attention_bias(mask)
        for i in range(4):
            x = enc.stage(i, x, bias)
        ref = enc.model(input_ids=ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(x[real], ref.last_hidden_state[real], atol=1e-5, rtol=1e-4)
    cls = enc.sentence_token(x, mask)
    if kind == "clip":  # the end-of-text state, exactly what CLIP itself pools
        torch.testing.assert_close(cls, ref.pooler_output, atol=1e-5, rtol=1e-4)
    else:
        torch.testing.assert_close(cls, ref.last_hidden_state[:, 0], atol=1e-5, rtol=1e-4)


def test_clip_padding_does_not_change_the_output(encoder_dirs):
    folder = encoder_dirs["clip"]
    torch.manual_seed(0)
    model = build_model("tmc", preset="tiny", image_size=64, text={"name": str(folder)}).eval()
    image, ids, mask = _batch(folder)
    garbage = ids.clone()
    garbage[mask == 0] = 7
    with torch.no_grad():
        torch.testing.assert_close(model(image, ids, mask), model(image, garbage, mask))


def test_clip_checkpoint_kwargs_rebuild_offline(encoder_dirs):
    folder = encoder_dirs["clip"]
    model = build_model("tmc", preset="tiny", image_size=64, text={"name": str(folder)})
    kwargs = model.checkpoint_kwargs()
    assert "text_encoder" not in kwargs and "name" not in kwargs["text"]
    again = build_model("tmc", **kwargs)
    again.load_state_dict(model.state_dict())  # strict: same architecture, same keys
    assert again.text.is_clip


def test_composed_local_choice_reaches_the_model_and_tokenizer(encoder_dirs):
    folder = str(encoder_dirs["clip"])
    cfg = compose_cfg(
        [
            "text_encoder=local",
            f"text_encoder.path={folder}",
            "dataset.preset=tiny",
            "dataset.image_size=64",
        ]
    )
    assert OmegaConf.to_container(cfg.model, resolve=True)["text_encoder"] == {
        "path": folder,
        "pretrained": True,
    }
    assert tokenizer_for(cfg) == folder
    name, kwargs = model_kwargs(cfg)  # the factory resolves the choice; the model sees settings
    assert "text_encoder" not in kwargs and kwargs["text"] == {"name": folder, "pretrained": True}
    model = build_model(name, **kwargs)
    assert model.text.is_clip and model.config.text.name == folder and model.config.text.pretrained

    lvit = compose_cfg(["model=lvit", "text_encoder=local", f"text_encoder.path={folder}"])
    assert OmegaConf.to_container(lvit.model, resolve=True)["text_encoder"]["path"] == folder
    assert tokenizer_for(lvit) == folder


def test_group_options_and_default(encoder_dirs):
    assert compose_cfg([]).model.text_encoder is None
    assert tokenizer_for(compose_cfg([])) is None  # small preset: WordPiece built from the data
    clip = compose_cfg(["text_encoder=clip"])
    assert OmegaConf.to_container(clip.model, resolve=True)["text_encoder"] == {
        "name": "openai/clip-vit-base-patch32",
        "pretrained": True,
    }
    assert tokenizer_for(clip) == "openai/clip-vit-base-patch32"
    assert tokenizer_for(compose_cfg(["text_encoder=bert_base"])) == "bert-base-uncased"
    off = compose_cfg(["text_encoder=bert_base", "text_encoder.pretrained=false"])
    assert tokenizer_for(off) is None  # random weights: WordPiece built from the data
    # Explicit model.text keys still win over the choice.
    over = compose_cfg(["text_encoder=clip", "+model.text.name=/models/biobert"])
    assert tokenizer_for(over) == "/models/biobert"
    with pytest.raises(ValueError, match=r"text_encoder\.path=/path/to/dir"):
        tokenizer_for(compose_cfg(["text_encoder=local"]))


def test_clip_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_cfg(["text_encoder=clip", "dataset.preset=tiny", "dataset.image_size=64"])
    name, kwargs = model_kwargs(cfg)
    start = time.time()
    with pytest.raises(EncoderUnavailableError) as err:
        build_model(name, **kwargs)
    assert time.time() - start < 15
    msg = str(err.value)
    for part in (
        "text encoder 'openai/clip-vit-base-patch32'",
        "huggingface-cli download openai/clip-vit-base-patch32",
        "text_encoder=local text_encoder.path=DIR",
        "HF_HUB_OFFLINE=1",
        "model.pretrained=false",
    ):
        assert part in msg, msg
    with pytest.raises(EncoderUnavailableError, match="tokenizer 'openai/clip-vit-base-patch32'"):
        load_pretrained(tokenizer_for(cfg))
