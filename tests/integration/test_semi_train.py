"""Fewer masks end to end: today's path unchanged, hidden masks, kill-and-resume of semi runs."""

import json
import os
import signal

import lightning as L
import pytest
import torch

from tests.helpers.config import tiny_cfg
from tmc_lightning.data.labels import LABELLED_LIST
from tmc_lightning.data.samplers import EpochShuffleSampler
from tmc_lightning.training import run as run_module
from tmc_lightning.training.factory import make_datamodule, make_module
from tmc_lightning.training.interrupt import TrainingInterrupted
from tmc_lightning.training.run import run

SHORT = ["trainer.max_epochs=1", "dataset.augment=false"]


def test_all_masks_and_semi_none_train_exactly_as_before(cache_dir, tmp_path):
    """label_fraction=1 + semi=none is today's path: no hook runs, the same metrics."""
    cfg = tiny_cfg(cache_dir, *SHORT, "dataset.label_fraction=1.0", "semi=none")
    dm = make_datamodule(cfg)
    dm.setup("fit")
    module = make_module(cfg, dm)
    ds = dm.datasets["train"]
    assert module.semi is None and module.configure_callbacks() == []
    assert ds.labelled is None and "labelled" not in ds[0]
    assert isinstance(dm.train_dataloader().sampler, EpochShuffleSampler)
    assert dm.labelled_names is None and len(ds) == 48
    explicit = run(cfg, tmp_path / "explicit")
    default = run(tiny_cfg(cache_dir, *SHORT), tmp_path / "default")  # no new key given
    assert explicit["val"] == default["val"] and explicit["test"] == default["test"]
    assert not (tmp_path / "default" / LABELLED_LIST).exists()


def test_supervised_on_the_labelled_part_and_hidden_masks(cache_dir, tmp_path):
    cfg = tiny_cfg(cache_dir, "dataset.label_fraction=0.25", "dataset.label_seed=5")
    dm = make_datamodule(cfg)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 12 and len(dm.labelled_names) == 12  # semi=none: cut
    assert {s.name for s in dm.samples["train"]} == set(dm.labelled_names)
    semi = tiny_cfg(cache_dir, "dataset.label_fraction=0.25", "dataset.label_seed=5", "semi=epi_lv")
    dm2 = make_datamodule(semi)
    dm2.setup("fit")
    ds = dm2.datasets["train"]
    assert len(ds) == 48 and dm2.labelled_names == dm.labelled_names  # same label_seed, same set
    hidden = [i for i in range(48) if not ds.labelled[i] and ds.masks[i].any()]
    item = ds[hidden[0]]
    assert item["labelled"] is False and not item["mask"].any()  # the mask never leaves
    batch = next(iter(dm2.train_dataloader()))
    assert batch["labelled"].tolist() == [True] * 8 + [False] * 8


@pytest.mark.parametrize("method", ["epi_lv", "mean_teacher"])
def test_semi_run_resumed_after_interrupt_equals_uninterrupted(
    cache_dir, tmp_path, monkeypatch, method
):
    """Stopped mid-epoch (Ctrl-C) and resumed from last.ckpt, a semi run ends bitwise equal:
    weights, teacher and pseudo-labels (EPI refreshes on both sides of the stop)."""
    over = [
        "trainer.max_epochs=3",
        "dataset.label_fraction=0.5",
        "dataset.hflip=true",
        "dataset.text_dropout=0.2",
        f"semi={method}",
        "run_test=false",
        "seed=3",
    ]
    if method == "mean_teacher":
        over.append("semi.rampup_steps=4")
    cfg = tiny_cfg(cache_dir, *over)
    run(cfg, tmp_path / "a")
    names = (tmp_path / "a" / LABELLED_LIST).read_text().split()
    assert len(names) == 24

    class StopMidEpoch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGINT)

    make_trainer = run_module.make_trainer

    def with_stop(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.callbacks.append(StopMidEpoch())
        return trainer

    monkeypatch.setattr(run_module, "make_trainer", with_stop)
    with pytest.raises(TrainingInterrupted):
        run(cfg, tmp_path / "b")
    monkeypatch.setattr(run_module, "make_trainer", make_trainer)
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    stopped = torch.load(last, map_location="cpu", weights_only=True)
    assert 3 < stopped["global_step"] < 6  # mid-epoch 1 (3 steps an epoch)
    resumed = tiny_cfg(cache_dir, f"ckpt_path={last}")
    run(resumed, tmp_path / "b")
    assert (tmp_path / "b" / LABELLED_LIST).read_text().split() == names

    a = torch.load(tmp_path / "a/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 9
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    sa, sb = a["callbacks"]["SemiSupervision"], b["callbacks"]["SemiSupervision"]
    assert sa["refreshed_epoch"] == sb["refreshed_epoch"]
    state = "pseudo" if method == "epi_lv" else "teacher"
    assert state in sa
    if method == "epi_lv":
        assert sa["refreshed_epoch"] == 2 and sa["pseudo_ready"]
        torch.testing.assert_close(sb["pseudo"], sa["pseudo"], rtol=0, atol=0)
    else:
        for key, value in sa["teacher"].items():
            torch.testing.assert_close(sb["teacher"][key], value, rtol=0, atol=0, msg=key)
    logs = json.dumps(sorted(p.name for p in (tmp_path / "b").iterdir()))
    assert "logs-resume1" in logs
