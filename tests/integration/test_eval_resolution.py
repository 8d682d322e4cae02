"""Scores at the masks' own resolution (``eval_resolution=original``) or the model's (``model``).

The hand-checked case: 128 px masks, a 64 px model. Mask ``a`` holds a 64x64 square and a
1-pixel line on row 80; resizing it to 64 px (nearest, which keeps the odd rows) loses the
line. A network that predicts exactly the square scores Dice 1 at the model's size, and at the
original size misses the line's 128 pixels: Dice 2*4096 / (4096 + 4224) = 0.98462,
IoU 4096 / 4224 = 0.96970.
"""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tests.helpers.config import compose_cfg
from tmc_lightning.data.datamodule import ManifestDataModule
from tmc_lightning.data.imageio import read_image
from tmc_lightning.errors import ConfigError
from tmc_lightning.evaluation import per_image
from tmc_lightning.evaluation.per_image import score_split
from tmc_lightning.inference import predictor as predictor_module
from tmc_lightning.inference.predictor import Predictor
from tmc_lightning.metrics import check_resolution, upsample_logits

ORIG, MODEL = 128, 64
SQUARE, LINE = 64 * 64, 128


def square_mask(line: bool) -> np.ndarray:
    m = np.zeros((ORIG, ORIG), np.uint8)
    m[:64, :64] = 255
    if line:
        m[80, :] = 255  # an even row: the 64 px nearest resize samples rows 1, 3, 5, ...
    return m


@pytest.fixture
def thin_set(tmp_path):
    """A manifest dataset: a.png (square + thin line), b.png (square), in every split."""
    rng = np.random.default_rng(0)
    rows = ["image,mask,text,split"]
    for split in ("train", "val", "test"):
        for name, line in (("a", True), ("b", False), ("c", True), ("d", False)):
            gray = rng.integers(0, 255, (ORIG, ORIG), dtype=np.uint8)
            Image.fromarray(gray).save(tmp_path / f"{split}_{name}.png")
            Image.fromarray(square_mask(line)).save(tmp_path / f"{split}_{name}_mask.png")
            rows.append(f"{split}_{name}.png,{split}_{name}_mask.png,left lung,{split}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "manifest.csv"


def thin_datamodule(manifest) -> ManifestDataModule:
    dm = ManifestDataModule(
        manifest=str(manifest), image_size=MODEL, augment=False, decoded_cache=False
    )
    dm.setup("validate")
    return dm


class Square(torch.nn.Module):
    """Predicts the top-left quadrant of the model's input, whatever the image."""

    hparams = SimpleNamespace(dice_weight=0.5)

    def forward(self, image, input_ids, attention_mask):
        b, _, h, w = image.shape
        logits = torch.full((b, 1, h, w), -10.0)
        logits[:, :, : h // 2, : w // 2] = 10.0
        return logits


class Bright(torch.nn.Module):
    """Logits that depend on every pixel of the input: bright pixels are foreground.

    The offset keeps every upsampled logit at least 1e-3 from 0 (inputs are k/127.5 - 1, 2x
    bilinear weights multiples of 1/16): the predictor's masks are ``sigmoid > 0.5``, the
    scorer's ``logit > 0``, which differ only where float32 rounds sigmoid(x) to 0.5 (|x| <
    3e-8), a question of the threshold, not of the upsampling tested here.
    """

    hparams = SimpleNamespace(dice_weight=0.5)

    def forward(self, image, input_ids, attention_mask):
        return image[:, :1] * 4.0 - 0.501


def score(dm, module, resolution, batch_size=3):
    loader = DataLoader(dm.datasets["val"], batch_size=batch_size)  # 3: uneven batches
    return score_split(module, loader, torch.device("cpu"), resolution=resolution)


def test_a_thin_line_lost_by_resizing_counts_only_at_the_original_size(thin_set):
    dm = thin_datamodule(thin_set)
    assert int(dm.datasets["val"].masks[0].sum()) == SQUARE // 4  # the line is gone at 64 px
    rows_m, model = score(dm, Square(), "model")
    rows_o, orig = score(dm, Square(), "original")
    assert [r["dice"] for r in rows_m] == [1.0] * 4
    assert model["dice"] == model["dice_global"] == 1.0 and model["resolution"] == "model"
    with_line = 2 * SQUARE / (2 * SQUARE + LINE)
    assert [r["dice"] for r in rows_o] == pytest.approx([with_line, 1.0, with_line, 1.0])
    assert rows_o[0]["iou"] == pytest.approx(SQUARE / (SQUARE + LINE))
    assert orig["dice"] == pytest.approx((with_line + 1) / 2)
    assert orig["dice_global"] == pytest.approx(8 * SQUARE / (8 * SQUARE + 2 * LINE))
    assert orig["resolution"] == "original"
    assert rows_o[0]["true_area"] == SQUARE + LINE and rows_o[0]["_pred"].shape == (ORIG, ORIG)
    # HD95 counts original pixels: the line lies 17-64+ px from the square; at 64 px none.
    assert rows_m[0]["hd95"] == 0.0 and rows_o[0]["hd95"] > 16
    # the model-size figures come along from the same logits
    for key in ("dice", "iou", "dice_global", "iou_global"):
        assert orig["model_resolution"][key] == pytest.approx(model[key])
    assert orig["loss"] == pytest.approx(model["loss"])  # the loss stays the training loss


def test_the_predictor_and_the_scorer_share_one_upsampling(thin_set):
    """The same function object, and the same masks, pixel for pixel, from both paths."""
    assert predictor_module.upsample_logits is upsample_logits
    assert per_image.upsample_logits is upsample_logits
    dm = thin_datamodule(thin_set)
    rows, _ = score(dm, Bright(), "original")
    predictor = Predictor(Bright(), None, MODEL, 8, torch.device("cpu"))
    samples = dm.samples["val"]
    probs = predictor.probabilities([read_image(s.image) for s in samples], ["x"] * len(samples))
    for row, prob in zip(rows, probs, strict=True):
        assert prob.shape == (ORIG, ORIG)
        assert np.array_equal(row["_pred"], prob > 0.5), row["name"]
        assert 0 < row["pred_area"] < ORIG * ORIG  # a real mask, not all or nothing


def test_upsample_logits_is_bilinear_on_the_logits():
    lg = torch.tensor([[[[10.0, -10.0]]]])  # 1x2 -> 1x4: the step is kept between 1 and 2
    up = upsample_logits(lg, (1, 4))
    assert torch.allclose(up[0, 0, 0], torch.tensor([10.0, 5.0, -5.0, -10.0]))
    assert upsample_logits(lg, (1, 2)) is lg  # already at the size: untouched


def test_an_unknown_resolution_names_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"eval_resolution='native'.*eval_resolution=original"):
        check_resolution("native")


def test_both_commands_default_to_the_original_size():
    assert compose_cfg([], "evaluate").eval_resolution == "original"
    assert compose_cfg(["dataset.cache_dir=/tmp/unused"]).eval_resolution == "original"


def test_an_out_of_order_loader_is_refused_at_the_original_size(thin_set):
    dm = thin_datamodule(thin_set)
    loader = DataLoader(dm.datasets["val"], batch_size=2, shuffle=True)
    torch.manual_seed(1)  # a permutation that moves item 0
    with pytest.raises(ValueError, match="unshuffled, unsharded loader"):
        score_split(Square(), loader, torch.device("cpu"), resolution="original")


def tiny_train(manifest, run_dir, *extra):
    from tmc_lightning.training.run import run

    cfg = compose_cfg(
        [
            "dataset=custom",
            f"dataset.manifest={manifest}",
            "dataset.preset=tiny",
            f"dataset.image_size={MODEL}",
            "dataset.batch_size=4",
            "dataset.eval_batch_size=3",
            "dataset.num_workers=0",
            "dataset.augment=false",
            "dataset.decoded_cache=false",
            "trainer.max_epochs=1",
            "callbacks.rich_progress=false",
            "trainer.enable_model_summary=false",
            "trainer.precision=32-true",
            *extra,
        ]
    )
    run(cfg, run_dir)
    return json.loads((run_dir / "metrics.json").read_text())


def csv_mean(path, key="dice"):
    with path.open() as f:
        return float(np.mean([float(r[key]) for r in csv.DictReader(f)]))


def test_training_and_tmc_eval_score_at_the_chosen_resolution(thin_set, tmp_path, cache_dir):
    from tmc_lightning.evaluation.evaluate import evaluate

    orig_dir, model_dir = tmp_path / "orig", tmp_path / "model"
    saved = tiny_train(thin_set, orig_dir)
    assert saved["eval_resolution"] == "original"
    ckpt = saved["best_checkpoint"]
    by_eval = evaluate(ckpt, ["val", "test"], str(tmp_path / "e.json"), artifacts=False)
    at_model = evaluate(
        ckpt, ["val"], str(tmp_path / "m.json"), artifacts=False, eval_resolution="model"
    )
    assert json.loads((tmp_path / "e.json").read_text())["eval_resolution"] == "original"
    assert json.loads((tmp_path / "m.json").read_text())["eval_resolution"] == "model"
    table = (tmp_path / "e_resolution.md").read_text()  # both resolutions side by side
    assert (
        "| val | model (64 px) |" in table and "| test | original (each mask's own size) |" in table
    )
    assert not (tmp_path / "m_resolution.md").exists()
    for split in ("val", "test"):
        for key in ("dice", "iou", "dice_global", "iou_global"):
            # the final scoring of training is tmc-eval's scorer: the same numbers
            assert saved[split][key] == pytest.approx(by_eval[split][key], abs=1e-6), key
        assert csv_mean(orig_dir / f"per_image_{split}.csv") == pytest.approx(saved[split]["dice"])
    for key in ("dice", "dice_global"):
        assert saved["val"]["model_resolution"][key] == pytest.approx(
            at_model["val"][key], abs=1e-6
        )
        assert by_eval["val"]["model_resolution"][key] == pytest.approx(at_model["val"][key])

    # artefacts and text modes at the original size: overlays drawn from the files themselves
    full = evaluate(ckpt, ["val"], str(tmp_path / "a.json"), top_k=1, text_mode=["given", "empty"])
    assert full["text_modes"]["val"]["given"]["dice"] == pytest.approx(full["val"]["dice"])
    assert full["val"]["per_image_summary"]["n"] == 4
    assert csv_mean(tmp_path / "a" / "val" / "per_image.csv") == pytest.approx(
        by_eval["val"]["dice"]
    )
    (best,) = (tmp_path / "a" / "val").glob("best1_*.png")
    assert Image.open(best).width == 2 * ORIG + 4  # two 128 px originals, not 64 px inputs

    saved_m = tiny_train(thin_set, model_dir, "eval_resolution=model")
    assert saved_m["eval_resolution"] == "model" and "model_resolution" not in saved_m["val"]
    assert csv_mean(model_dir / "per_image_val.csv") == pytest.approx(saved_m["val"]["dice"])


def test_a_wrong_setting_stops_training_before_it_starts(thin_set, tmp_path):
    with pytest.raises(ConfigError, match="eval_resolution='full'"):
        tiny_train(thin_set, tmp_path / "run", "eval_resolution=full")
    assert not (tmp_path / "run").exists()
