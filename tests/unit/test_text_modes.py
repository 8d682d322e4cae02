"""tmc-eval's text modes change the token ids they should and no others; text dropout."""

import numpy as np
import pytest
import torch

from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.errors import ConfigError
from tmc_lightning.evaluation.evaluate import mode_dataset
from tmc_lightning.evaluation.text_modes import derangement, parse_modes
from tmc_lightning.metrics import bootstrap_global_dice_ci as global_dice_ci


@pytest.mark.parametrize("n", [2, 3, 7, 500])
def test_derangement_leaves_no_item_in_place(n):
    perm = derangement(n)
    assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    assert np.array_equal(perm, derangement(n))  # fixed seed


def test_modes_parse_given_first_and_reject_typos():
    assert parse_modes("all") == ["given", "empty", "shuffled", "generic"]
    assert parse_modes(["empty", "given"]) == ["given", "empty"]
    with pytest.raises(ConfigError, match="shuffle"):
        parse_modes(["shuffle"])


@pytest.fixture(scope="module")
def tiny_dm(tmp_path_factory):
    dm = build_datamodule(
        "synthetic", n_train=48, n_val=24, n_test=8, image_size=64, max_words=24,
        cache_dir=str(tmp_path_factory.mktemp("c")), text_dropout=0.3,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_each_mode_changes_the_ids_it_should_and_no_others(tiny_dm):
    ds = tiny_dm.datasets["val"]
    ids, attn = ds.tokens
    given, _ = mode_dataset(tiny_dm, ds, "given", None)
    assert torch.equal(given.tokens[0], ids) and torch.equal(given.tokens[1], attn)
    tok = tiny_dm.build_tokenizer()
    specials = {tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")}
    empty, _ = mode_dataset(tiny_dm, ds, "empty", None)
    assert set(empty.tokens[0].unique().tolist()) <= specials
    assert (empty.tokens[1].sum(1) == 2).all()  # [CLS] [SEP] only
    generic, info = mode_dataset(tiny_dm, ds, "generic", "Pulmonary infection.")
    assert (generic.tokens[0] == generic.tokens[0][0]).all() and info["prompt"]
    shuffled, info = mode_dataset(tiny_dm, ds, "shuffled", None)
    perm = derangement(len(ds))
    assert torch.equal(shuffled.tokens[0], ids[perm])  # another image's own tokens
    texts = ds.texts
    assert info["same_text"] == sum(texts[i] == texts[j] for i, j in enumerate(perm))
    assert all(shuffled[i]["text"] == texts[perm[i]] for i in range(len(ds)))
    for mode_ds in (empty, generic, shuffled):  # images and masks untouched
        assert torch.equal(mode_ds[3]["image"], ds[3]["image"])
        assert torch.equal(mode_ds[3]["mask"], ds[3]["mask"])
    with pytest.raises(ConfigError, match="generic_prompt"):
        mode_dataset(tiny_dm, ds, "generic", None)


def test_text_dropout_is_seeded_per_item_and_leaves_augmentation_alone(tiny_dm):
    ds = tiny_dm.datasets["train"]
    keys = [(i % len(ds), 1000 + i) for i in range(400)]
    first = [ds[k]["text"] == "" for k in keys]
    assert first == [ds[k]["text"] == "" for k in keys]  # the same draws again
    assert 0.2 < np.mean(first) < 0.4
    k = next(k for k, dropped in zip(keys, first, strict=True) if dropped)
    item = ds[k]
    assert item["attention_mask"].sum() == 2  # the empty prompt: [CLS] [SEP]
    ds.text_dropout = 0.0
    try:  # without dropout the same item gets its text and exactly the same augmentation
        plain = ds[k]
    finally:
        ds.text_dropout = 0.3
    assert plain["text"] and torch.equal(plain["image"], item["image"])
    assert tiny_dm.datasets["val"].text_dropout == 0.0  # never at evaluation


def test_text_dropout_out_of_range_is_one_clear_error():
    with pytest.raises(ConfigError, match="text_dropout"):
        build_datamodule("synthetic", text_dropout=1.5)


def test_global_dice_ci_brackets_the_value():
    rng = np.random.default_rng(0)
    true = rng.integers(50, 100, 200).astype(float)
    pred = true + rng.integers(-20, 20, 200)
    tp = np.minimum(pred, true) * 0.9
    lo, hi = global_dice_ci(tp, pred, true)
    value = 2 * tp.sum() / (pred.sum() + true.sum())
    assert lo < value < hi
