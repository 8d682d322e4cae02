"""The DataModule: triples from the LViT layout, tokenisation, text-consistent augmentation."""

import numpy as np
import pytest
import torch

from tmc_lightning.data import synthetic
from tmc_lightning.data.datamodule import SyntheticDataModule, build_datamodule, datamodule_keys
from tmc_lightning.data.layouts import DataError
from tmc_lightning.errors import ConfigError

SMALL = {"n_train": 24, "n_val": 8, "n_test": 8, "image_size": 64, "batch_size": 4, "max_words": 24}


@pytest.fixture(scope="module")
def dm(cache_dir):
    module = SyntheticDataModule(cache_dir=str(cache_dir), **SMALL)
    module.prepare_data()
    module.setup("fit")
    return module


def test_batches_hold_image_mask_and_tokens(dm):
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 1, 64, 64)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert batch["input_ids"].shape == (4, 24) and batch["attention_mask"].shape == (4, 24)
    cls = dm.tokenizer.token_to_id("[CLS]")
    assert (batch["input_ids"][:, 0] == cls).all()
    assert len(batch["text"]) == 4 and all(t.endswith(".") for t in batch["text"])


def test_tokenizer_roundtrips_through_state_dict(dm):
    other = SyntheticDataModule(cache_dir=dm.hparams.cache_dir, **SMALL)
    other.load_state_dict(dm.state_dict())
    assert other.tokenizer.get_vocab() == dm.tokenizer.get_vocab()


def test_train_order_depends_only_on_seed_and_epoch(dm):
    def names(epoch):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [n for b in loader for n in b["name"]]

    assert names(3) == names(3)
    assert names(3) != names(4)


def test_identity_changes_with_content(dm):
    ident = dm.identity()
    assert ident["name"] == "synthetic" and ident["sizes"] == {"train": 24, "val": 8}
    assert len(ident["sha256"]) == 16


def _sides_in_mask(mask: np.ndarray) -> set[str]:
    # Radiographic convention: the patient's left lung is on the image's right half.
    w = mask.shape[1]
    cols = np.nonzero(mask.any(0))[0]
    return {"left" if c >= w / 2 else "right" for c in cols}


def test_flip_and_affine_augmentation_keep_text_and_mask_consistent(cache_dir):
    module = SyntheticDataModule(cache_dir=str(cache_dir), hflip=True, augment=True, **SMALL)
    module.setup("fit")
    ds = module.datasets["train"]
    flipped = 0
    for epoch_seed in range(3):
        for i in range(len(ds)):
            item = ds[(i, 1000 * epoch_seed + i)]
            named = {side for _, side in synthetic.parse_zones(item["text"])}
            assert _sides_in_mask(item["mask"][0].numpy() > 0) == named, item["text"]
            flipped += item["text"] != module.samples["train"][i].text
            ids = module.tokenizer.encode(item["text"]).ids
            assert item["input_ids"][: len(ids)].tolist() == ids  # tokens match the (swapped) text
    assert flipped > 0


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ConfigError, match="synthetic"):
        build_datamodule("imagenet")


def test_unknown_dataset_setting_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="dataset.batch_szie.*did you mean batch_size"):
        build_datamodule("qata", root="/data", batch_szie=4)
    # a synthetic-only key on a real dataset is unknown there
    with pytest.raises(ConfigError, match="dataset.n_train"):
        build_datamodule("qata", root="/data", n_train=4)
    assert {"n_train", "root", "preset", "batch_size"} <= datamodule_keys("synthetic")
    assert "lr" not in datamodule_keys("synthetic")  # the recipe: conf/recipe/, not the data


def test_missing_root_names_the_layout(tmp_path):
    dm = build_datamodule("qata", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="LViT layout"):
        dm.setup("fit")
