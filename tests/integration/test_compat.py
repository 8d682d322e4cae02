"""Checkpoints written before the redesign still load, evaluate and predict the same numbers,
and training and prediction turn an image into the same network input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tmc_lightning.data.imageio import read_image
from tmc_lightning.evaluation.evaluate import evaluate
from tmc_lightning.inference.checkpoint import load_datamodule, read_checkpoint
from tmc_lightning.inference.predict import predict
from tmc_lightning.inference.predictor import Predictor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD = FIXTURES / "tmc_tiny_premove.ckpt"
REF = json.loads((FIXTURES / "tmc_tiny_premove.json").read_text())


def test_premove_checkpoint_evaluates_to_the_recorded_metrics(cache_dir, tmp_path):
    out = evaluate(str(OLD), ["val", "test"], out=str(tmp_path / "eval.json"), artifacts=False)
    for split in ("val", "test"):
        for key in ("dice", "iou", "dice_global", "iou_global"):
            assert out[split][key] == pytest.approx(REF[split][key], abs=1e-5), (split, key)
        # val/loss is the task loss alone now; before, it included lambda x L_align (> 0).
        assert 0 < out[split]["loss"] < REF[split]["loss"]


def test_premove_checkpoint_predicts_the_recorded_probabilities(tmp_path):
    ref = REF["predict"]
    predictor = Predictor.from_checkpoint(OLD)
    gray = read_image(FIXTURES / ref["image"])
    prob = predictor.probabilities([gray], [ref["text"]])[0]
    assert prob.mean() == pytest.approx(ref["prob_mean"], abs=1e-6)
    assert int((prob > 0.5).sum()) == ref["mask_pixels"] > 0
    grid = [float(prob[i * 4, j * 4]) for i in range(0, 16, 5) for j in range(0, 16, 5)]
    np.testing.assert_allclose(grid, ref["prob_rows_16"], atol=1e-6)
    written = predict(str(OLD), str(FIXTURES / ref["image"]), ref["text"], str(tmp_path))
    assert {p.name for p in written} == {"synthetic_test3_mask.png", "synthetic_test3_overlay.png"}


def test_datamodule_and_predictor_make_identical_inputs(cache_dir):
    """The same file through the training data path and the predictor: the same tensor."""
    ckpt = read_checkpoint(OLD)
    dm = load_datamodule(ckpt)
    dm.prepare_data()
    dm.setup("test")
    predictor = Predictor.from_checkpoint(OLD)
    for i in (0, 3, 7):
        item = dm.datasets["test"][i]  # evaluation items: no augmentation
        sample = dm.samples["test"][i]
        image, ids, mask = predictor.tensors([read_image(sample.image)], [sample.text])
        assert torch.equal(item["image"], image[0]), sample.image
        assert torch.equal(item["input_ids"], ids[0]) and torch.equal(
            item["attention_mask"], mask[0]
        )


# Two command starts (~25 s): the same numbers are checked in-process above (evaluate, predict).
@pytest.mark.slow
def test_the_commands_accept_the_premove_checkpoint(cache_dir, tmp_path):
    """tmc-eval and tmc-predict as a user runs them, on the checkpoint of an earlier version."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TMC_CACHE_DIR": str(cache_dir)}
    out = tmp_path / "eval.json"
    ev = [sys.executable, "-m", "tmc_lightning.evaluate", f"ckpt_path={OLD}", f"out={out}"]
    done = subprocess.run(
        [*ev, "splits=[val]"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(out.read_text())["val"]["dice"] == pytest.approx(REF["val"]["dice"], abs=1e-5)
    assert (tmp_path / "eval" / "val" / "per_image.csv").is_file()  # artefacts beside out=
    ref = REF["predict"]
    pr = [sys.executable, "-m", "tmc_lightning.predict", f"ckpt_path={OLD}"]
    pr += [f"input={FIXTURES / ref['image']}", f"text='{ref['text']}'", f"out={tmp_path / 'p'}"]
    done = subprocess.run(pr, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    mask = np.asarray(Image.open(tmp_path / "p" / "synthetic_test3_mask.png"))
    assert int((mask > 0).sum()) == ref["mask_pixels"]


def test_an_odd_colour_image_decodes_and_resizes_the_same_in_both_paths(tmp_path):
    """RGB, 16-bit and odd sizes: the cache's decode + resize and the predictor's agree."""
    from PIL import Image

    from tmc_lightning.data.datamodule import TripleDataset
    from tmc_lightning.data.imageio import load_image
    from tmc_lightning.data.layouts import Sample

    predictor = Predictor.from_checkpoint(OLD)
    rng = np.random.default_rng(0)
    files = {
        "rgb.png": rng.integers(0, 255, (77, 91, 3), dtype=np.uint8),
        "deep.png": rng.integers(0, 65535, (70, 65), dtype=np.uint16),
    }
    for name, array in files.items():
        Image.fromarray(array).save(tmp_path / name)
        sample = Sample(image=tmp_path / name, mask=tmp_path / name, text="x")
        cached = load_image(sample.image, predictor.image_size)[None]  # what the cache holds
        ds = TripleDataset(
            [sample], cached, cached, (torch.zeros(1, 4).long(), torch.ones(1, 4).long())
        )
        image, _, _ = predictor.tensors([read_image(sample.image)], ["x"])
        assert torch.equal(ds[0]["image"], image[0]), name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(OLD.read_bytes()[:5000]), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_text("hello"), "not a readable PyTorch checkpoint"),
        (lambda p: torch.save({"a.weight": torch.zeros(2)}, p), "holds a plain state dict"),
        (lambda p: torch.save([1, 2], p), "holds a list, not a tmc-train checkpoint"),
    ],
)
def test_broken_checkpoints_get_one_sentence(tmp_path, make, message):
    from tmc_lightning.inference.checkpoint import CheckpointError

    bad = tmp_path / "checkpoints" / "last.ckpt"
    bad.parent.mkdir()
    make(bad)
    with pytest.raises(CheckpointError, match=message) as err:
        read_checkpoint(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow  # two command starts (~25 s); the message itself is tested above in-process
def test_a_truncated_checkpoint_is_one_line_for_eval_and_resume(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "checkpoints" / "last.ckpt"
    bad.parent.mkdir()
    bad.write_bytes(OLD.read_bytes()[:5000])  # a copy cut short, as by a full disk
    message = "not a readable PyTorch checkpoint"
    for module in ("tmc_lightning.evaluate", "tmc_lightning.train"):  # tmc-eval and a resume
        cmd = [sys.executable, "-m", module, f"ckpt_path={bad}"]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr[-1500:]
