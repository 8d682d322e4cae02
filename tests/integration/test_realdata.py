"""The real QaTa-COV19 train/val release in ../shared/data (skipped where it is absent)."""

import pytest

from tests.helpers.config import SHARED_QATA
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.data.layouts import read_lvit

pytestmark = pytest.mark.skipif(
    not SHARED_QATA.is_dir(), reason=f"real QaTa-COV19 data not found at {SHARED_QATA}"
)


def test_real_qata_indexes_every_triple_with_text():
    train, val = read_lvit(SHARED_QATA, "train"), read_lvit(SHARED_QATA, "val")
    assert (len(train), len(val)) == (5716, 1429)
    assert all(
        s.text and s.image.is_file() and s.mask.name == f"mask_{s.image.name}" for s in train + val
    )
    assert not {s.image.name for s in train} & {s.image.name for s in val}
    assert not build_datamodule("qata", root=str(SHARED_QATA)).has_split("test")


def test_a_few_training_steps_on_real_images(tmp_path, cache_dir):
    from tests.helpers.config import compose_cfg
    from tmc_lightning.training.run import run

    cfg = compose_cfg(
        [
            "dataset=qata",
            f"dataset.root={SHARED_QATA}",
            "dataset.preset=tiny",
            "dataset.image_size=64",
            "dataset.num_workers=0",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=4",
            "+trainer.limit_val_batches=4",
            "callbacks.rich_progress=false",
        ]
    )
    results = run(cfg, tmp_path)
    assert "test" not in results and 0 <= results["val"]["dice"] <= 1


def test_data_check_reports_the_real_release(capsys):
    """tmc-data check dataset=qata dataset.root=../shared/data/QaTa-COV19 (decodes all 7145)."""
    from tmc_lightning.data.inspect import report

    assert report(build_datamodule("qata", root=str(SHARED_QATA), convention="plain")) == 0
    out = capsys.readouterr().out
    # LViT's texts say "left" for the image's left half (measured, issue 20)
    line = next(ln for ln in out.splitlines() if "laterality convention" in ln)
    assert "(measured): plain" in line and "WARNING" not in line, line
    assert "triples: 5716" in out and "triples: 1429" in out
    assert "[test]\n  absent" in out and out.count("images without masks/text: 0") == 2
    assert "unreadable" not in out and "ERROR" not in out and "ready to train" in out
