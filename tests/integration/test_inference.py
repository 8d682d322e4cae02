"""tmc-predict, tmc-explain and the per-image evaluation artefacts, on the tiny trained model."""

import csv
import pickle

import numpy as np
import pytest
from PIL import Image

from tmc_lightning.data.layouts import DataError
from tmc_lightning.evaluation.evaluate import evaluate
from tmc_lightning.inference.checkpoint import CheckpointError, read_checkpoint
from tmc_lightning.inference.explain import explain
from tmc_lightning.inference.predict import predict
from tmc_lightning.inference.predictor import Predictor

PROMPT = "Unilateral pulmonary infection, one infected area, lower left lung."


@pytest.fixture(scope="module")
def ckpt(trained_tiny):
    return trained_tiny["results"]["best_checkpoint"]


@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (77, 91), dtype=np.uint8)).save(folder / "gray_odd.png")
    Image.fromarray(rng.integers(0, 255, (50, 64, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 65535, (65, 70), dtype=np.uint16)).save(folder / "deep16.png")
    return folder


def test_masks_keep_each_inputs_size(ckpt, odd_inputs, tmp_path):
    predict(ckpt, str(odd_inputs), PROMPT, str(tmp_path), prob=True)
    for src in odd_inputs.iterdir():
        size = Image.open(src).size
        mask = Image.open(tmp_path / f"{src.stem}_mask.png")
        assert mask.size == size and set(np.unique(np.asarray(mask))) <= {0, 255}
        assert Image.open(tmp_path / f"{src.stem}_prob.png").size == size
    # one mask, one overlay and one probability map per input, nothing else
    assert len(list(tmp_path.iterdir())) == 3 * len(list(odd_inputs.iterdir()))


def test_overlay_is_not_blank(ckpt, odd_inputs, tmp_path):
    predict(ckpt, str(odd_inputs / "gray_odd.png"), PROMPT, str(tmp_path))
    over = np.asarray(Image.open(tmp_path / "gray_odd_overlay.png"))
    assert over.ndim == 3 and over.std() > 10


def test_csv_input_and_bad_input_write_nothing(ckpt, odd_inputs, tmp_path):
    sheet = tmp_path / "pairs.csv"
    sheet.write_text(f'image,text\n{odd_inputs / "rgb.png"},"{PROMPT}"\n')
    out = tmp_path / "out"
    assert len(predict(ckpt, str(sheet), None, str(out))) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text(f"image,text\n{odd_inputs / 'rgb.png'},\n")  # empty prompt for a text model
    with pytest.raises(ValueError, match="needs a prompt"):
        predict(ckpt, str(bad), None, str(tmp_path / "none"))
    with pytest.raises(DataError, match="does not exist"):
        predict(ckpt, str(tmp_path / "missing.png"), PROMPT, str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()


def test_prompt_changes_the_prediction(ckpt, odd_inputs):
    predictor = Predictor.from_checkpoint(ckpt)
    gray = np.asarray(Image.open(odd_inputs / "gray_odd.png"))
    a = predictor.probabilities([gray], [PROMPT])[0]
    b = predictor.probabilities([gray], [PROMPT.replace("lower left", "upper right")])[0]
    assert np.abs(a - b).max() > 1e-4


def test_heatmap_grid_has_a_panel_per_word_per_stage(ckpt, odd_inputs, tmp_path, monkeypatch):
    import tmc_lightning.inference.explain as ex

    seen = {}
    original = ex.heatmap_figure

    def spy(gray, words, maps, text):
        fig = original(gray, words, maps, text)
        seen["axes"], seen["words"], seen["stages"] = len(fig.axes), words, len(maps)
        return fig

    monkeypatch.setattr(ex, "heatmap_figure", spy)
    path = explain(ckpt, str(odd_inputs / "gray_odd.png"), PROMPT, str(tmp_path / "att.png"))
    assert path.is_file() and Image.open(path).size[0] > 200
    assert seen["stages"] == 4
    assert (
        seen["words"][:3] == ["unilateral", "pulmonary", "infection"] and "lower" in seen["words"]
    )
    assert seen["axes"] == 4 * (len(seen["words"]) + 1)


def test_per_image_csv_matches_the_reported_metric(ckpt, tmp_path):
    out = evaluate(ckpt, ["test"], out=str(tmp_path / "eval.json"), top_k=2)
    folder = tmp_path / "eval" / "test"  # beside out=, not in the run folder
    with (folder / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    assert np.mean([float(r["dice"]) for r in rows]) == pytest.approx(out["test"]["dice"], abs=1e-6)
    summary = out["test"]["per_image_summary"]
    assert summary["dice_ci95"][0] <= summary["dice"] <= summary["dice_ci95"][1]
    by_size = summary["dice_by_lesion_size"]
    assert sum(b["n"] for b in by_size) == 16
    assert sum(b["n"] * b["dice"] for b in by_size) / 16 == pytest.approx(summary["dice"])
    assert len(list(folder.glob("best*.png"))) == 2 and len(list(folder.glob("worst*.png"))) == 2


class Payload:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_checkpoint_that_needs_unpickling_code_is_refused(tmp_path):
    evil = tmp_path / "evil.ckpt"
    with evil.open("wb") as f:
        pickle.dump({"hyper_parameters": {"model_name": "tmc"}, "x": Payload()}, f)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        read_checkpoint(evil)


def test_checkpoint_naming_an_import_path_is_refused(ckpt, tmp_path):
    import torch

    data = torch.load(ckpt, weights_only=True)
    data["hyper_parameters"]["model_kwargs"]["text"] = {
        "_target_": "os.system",
        "command": "echo hi",
    }
    bad = tmp_path / "target.ckpt"
    torch.save(data, bad)
    with pytest.raises(CheckpointError, match="import path"):
        read_checkpoint(bad)
