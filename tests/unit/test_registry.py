"""The registry and the typed configs: every model rejects settings it does not have."""

import dataclasses

import pytest
import torch

from tmc_lightning.errors import ConfigError
from tmc_lightning.models import build_model, list_models, model_class


def test_known_models_registered():
    assert {"unet", "lvit", "tmc", "attunet", "unetpp", "transunet", "uctransnet"} <= set(
        list_models()
    )


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError) as err:
        build_model("segformer9000")
    assert "tmc" in str(err.value) and "unet" in str(err.value)


@pytest.mark.parametrize("name", list_models())
def test_unknown_key_is_an_error_naming_it(name):
    with pytest.raises(ConfigError, match="model.not_a_key: unknown key") as err:
        build_model(name, preset="tiny", not_a_key=1)
    assert "valid keys: " in str(err.value) and "preset" in str(err.value)


@pytest.mark.parametrize("name", list_models())
def test_unknown_preset_is_an_error(name):
    with pytest.raises(ConfigError, match="choose one of paper, small, (small_pretrained, )?tiny"):
        build_model(name, preset="huge")


@pytest.mark.parametrize("name", list_models())
def test_presets_are_instances_of_the_models_config(name):
    presets = model_class(name).presets
    assert {"tiny", "small", "paper"} <= set(presets)
    assert set(presets) - {"tiny", "small", "paper"} <= {"small_pretrained"}
    kinds = {type(p) for p in presets.values()}
    assert len(kinds) == 1 and dataclasses.is_dataclass(kinds.pop())
    assert all(p.preset == key for key, p in presets.items())


@pytest.mark.parametrize("name", ["tmc", "lvit", "unet", "uctransnet"])
def test_a_typo_suggests_the_nearest_key(name):
    with pytest.raises(ConfigError, match="base_widht.*did you mean base_width"):
        build_model(name, preset="tiny", base_widht=32)


def test_a_typo_inside_an_encoder_config_is_named_with_its_path():
    with pytest.raises(ConfigError, match=r"model\.text\.hiden_size.*did you mean hidden_size"):
        build_model("tmc", preset="tiny", vocab_size=50, text={"hiden_size": 8})
    with pytest.raises(ConfigError, match=r"model\.vision\.embed_dims.*did you mean embed_dim"):
        build_model("tmc", preset="tiny", vocab_size=50, vision={"embed_dims": 8})
    with pytest.raises(ConfigError, match="model.text takes a mapping"):
        build_model("tmc", preset="tiny", vocab_size=50, text=8)


def test_overrides_reach_the_network_and_null_keeps_the_preset():
    net = build_model("tmc", preset="tiny", image_size=64, vocab_size=50, base_width=4)
    assert net.config.base_width == 4 and net.segmenter is not None
    kept = build_model("unet", preset="tiny", base_width=None)
    assert kept.config.base_width == 8
    wide = build_model("tmc", preset="tiny", image_size=64, vocab_size=50, text={"hidden_size": 48})
    assert wide.text.hidden_size == 48 and wide.config.text.num_hidden_layers == 4


def test_another_text_encoder_by_name_drops_the_presets_sizes():
    cfg = model_class("tmc").make_config({"preset": "small", "text": {"name": "/models/bert"}})
    assert cfg.text.name == "/models/bert" and cfg.text.pretrained
    assert cfg.text.hidden_size is None  # loads as it is, not resized to the preset's 64


def test_a_stored_text_config_wins_over_the_presets_sizes():
    """The checkpoint's resolved text config rebuilds the encoder, whatever the preset's widths."""
    net = build_model("tmc", preset="tiny", image_size=64, vocab_size=50, text={"hidden_size": 16})
    kwargs = net.checkpoint_kwargs()
    again = build_model("tmc", **kwargs)
    assert again.text.hidden_size == 16
    again.load_state_dict(net.state_dict())  # strict: every tensor has its place and shape
    for (name, a), b in zip(net.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
