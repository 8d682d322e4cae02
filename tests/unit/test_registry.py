import pytest

from tmc_lightning.models import build_model, list_models


def test_known_models_registered():
    assert {"unet", "lvit", "tmc"} <= set(list_models())


def test_unknown_model_lists_known_ones():
    with pytest.raises(KeyError) as err:
        build_model("segformer9000")
    assert "tmc" in str(err.value) and "unet" in str(err.value)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(KeyError, match="choose one of"):
        build_model("tmc", preset="huge")
