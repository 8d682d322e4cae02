"""Every config in conf/ composes, and each group option resolves to something buildable."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers.config import compose_cfg
from tmc_lightning.models.registry import list_models, model_class
from tmc_lightning.utils import CONF_DIR

GROUPS = {  # the training config's groups (tool/ holds what the tools' configs share)
    p.name: sorted(f.stem for f in p.glob("*.yaml"))
    for p in Path(CONF_DIR).iterdir()
    if p.is_dir() and p.name != "tool"
}
TOOLS = sorted(p.stem for p in Path(CONF_DIR).glob("*.yaml") if p.stem != "train")
CASES = [(g, o) for g, options in sorted(GROUPS.items()) for o in options]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_config_composes_and_runs_in_the_working_folder(tool):
    cfg = compose_cfg([], config_name=tool, return_hydra=True)
    assert cfg.hydra.run.dir == "." and cfg.hydra.output_subdir is None
    assert cfg.hydra.job_logging.handlers.console.stream == "ext://sys.stdout"


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
    assert (cfg.optim.lr, cfg.loss.dice_weight, cfg.loss.align_weight) == (1e-3, 0.5, 0.01)


@pytest.mark.parametrize(
    "overrides, recipe",
    [
        (["dataset=qata"], (3e-4, 0.0, 0.1)),
        (["dataset=mosmed"], (1e-3, 0.0, 0.1)),  # the paper's MosMed recipe, by dataset= alone
        (["dataset=breast"], (3e-4, 0.0, 0.1)),
        (["dataset=mosmed", "recipe=synthetic"], (1e-3, 0.5, 0.01)),
        (["dataset=mosmed", "optim.lr=5e-4"], (5e-4, 0.0, 0.1)),
        (["experiment=qata_cpu"], (1e-3, 0.5, 0.01)),  # an experiment's dataset brings its recipe
        (["experiment=table1", "dataset=mosmed"], (1e-3, 0.0, 0.1)),
    ],
)
def test_the_recipe_follows_the_dataset_and_lives_outside_it(overrides, recipe):
    cfg = compose_cfg(overrides)
    assert (cfg.optim.lr, cfg.loss.dice_weight, cfg.loss.align_weight) == recipe
    assert not {"lr", "dice_weight", "align_weight"} & set(cfg.dataset)


def test_old_dataset_recipe_overrides_become_the_new_keys():
    from tmc_lightning.cli.train import moved_overrides

    argv, notes = moved_overrides(
        ["dataset=mosmed", "dataset.lr=1e-3,3e-4", "+dataset.align_weight=0", "dataset.root=x"]
    )
    assert argv == ["dataset=mosmed", "optim.lr=1e-3,3e-4", "loss.align_weight=0", "dataset.root=x"]
    assert len(notes) == 2 and "dataset.lr is now optim.lr" in notes[0]
    cfg = compose_cfg(argv[:1] + ["optim.lr=3e-4", argv[2]])
    assert (cfg.optim.lr, cfg.loss.align_weight) == (3e-4, 0)


def test_a_config_saved_before_the_move_still_checks(tmp_path):
    """Saved run configs held dataset.lr etc. beside optim/loss, whose value won: it still does."""
    from tmc_lightning.training.factory import check_config

    cfg = compose_cfg(["dataset=qata", "dataset.root=" + str(tmp_path), "loss.align_weight=0.001"])
    OmegaConf.set_struct(cfg, False)
    cfg.dataset.lr, cfg.dataset.align_weight = cfg.optim.lr, 0.01  # as the ablations saved them
    check_config(cfg)
    assert cfg.loss.align_weight == 0.001


def test_a_dataset_without_a_recipe_trains_with_the_defaults(tmp_path):
    """A user's own dataset config (no conf/recipe/<name>.yaml) composes, with train.yaml's."""
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mine.yaml").write_text(
        (Path(CONF_DIR) / "dataset/custom.yaml").read_text()
    )
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.searchpath=[file://{tmp_path}]", "dataset=mine"])
    assert (cfg.optim.lr, cfg.loss.dice_weight, cfg.loss.align_weight) == (3e-4, 0.0, 0.1)


def _hydra_dirs(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir

    import tmc_lightning.cli.resolvers  # noqa: F401  (registers the folder resolvers)

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    keys = ("run.dir", "sweep.dir", "output_subdir")
    return {k: OmegaConf.select(cfg.hydra, k) for k in keys}


def test_sweep_and_run_folders(tmp_path):
    assert _hydra_dirs([])["sweep.dir"].startswith("multirun/adhoc/")  # group: null
    assert _hydra_dirs(["experiment=ablation"])["sweep.dir"].startswith("multirun/ablation/")
    plain = _hydra_dirs(["model=unet"])
    assert plain["run.dir"].startswith("outputs/synthetic/unet/")
    assert plain["output_subdir"] == ".hydra"
    # a resume continues in the checkpoint's run folder and keeps the original .hydra record
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    resumed = _hydra_dirs([f"ckpt_path={last}"])
    assert resumed["run.dir"] == str(tmp_path / "run")
    assert resumed["output_subdir"].startswith(".hydra-resume-")


def test_the_training_sections_defaults_agree_with_conf():
    """Each default is written once (training/settings.py); conf/train.yaml repeats it."""
    import dataclasses

    from tmc_lightning.training.module import SegmentationModule
    from tmc_lightning.training.settings import LossConfig, OptimConfig, PerfConfig

    cfg = OmegaConf.load(Path(CONF_DIR) / "train.yaml")  # as written, before any recipe
    for key, schema in (("optim", OptimConfig), ("loss", LossConfig), ("perf", PerfConfig)):
        for field in dataclasses.fields(schema):
            written = OmegaConf.select(cfg, f"{key}.{field.name}")
            assert written == field.default, (
                f"{key}.{field.name}: conf {written} != {field.default}"
            )
    init = SegmentationModule.__init__.__defaults__
    names = SegmentationModule.__init__.__code__.co_varnames[1 : 1 + len(init)]
    defaults = dict(zip(names, init, strict=True))
    assert defaults["warmup_epochs"] == OptimConfig.warmup_epochs
    assert defaults["min_lr_ratio"] == OptimConfig.min_lr_ratio
    assert defaults["align_weight"] == LossConfig.align_weight
