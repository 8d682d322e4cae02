"""Every config in conf/ composes, and each group option resolves to something buildable."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_cfg
from tmc_lightning.models.registry import list_models, model_class
from tmc_lightning.utils import CONF_DIR

GROUPS = {
    p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in Path(CONF_DIR).iterdir() if p.is_dir()
}
CASES = [(g, o) for g, options in sorted(GROUPS.items()) for o in options]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_every_model_config_names_a_registered_model():
    for option in GROUPS["model"]:
        cfg = compose_cfg([f"model={option}"])
        assert cfg.model.name in list_models()
        model_class(cfg.model.name)


def test_evaluate_config_composes():
    cfg = compose_cfg(["ckpt_path=x.ckpt"], config_name="evaluate")
    assert cfg.splits == ["val", "test"]


def test_default_is_tmc_small_on_synthetic():
    cfg = compose_cfg([])
    assert (cfg.model.name, cfg.model.preset, cfg.dataset.name) == ("tmc", "small", "synthetic")
    assert cfg.dataset.lr == 1e-3
    assert compose_cfg(["dataset=qata"]).dataset.lr == 3e-4
    assert compose_cfg(["dataset=mosmed"]).dataset.lr == 1e-3
