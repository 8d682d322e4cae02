"""experiments/qata_semi/targets.py: scoring the unlabelled images' targets against their masks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "experiments/qata_semi/targets.py"
_spec = importlib.util.spec_from_file_location("semi_targets", SCRIPT)
targets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(targets)


def test_scores_by_hand():
    masks = torch.zeros(3, 4, 4)
    masks[0, :2, :2] = 1  # 4 pixels
    masks[1, 0, 0] = 1  # 1 pixel; image 2 has no lesion
    prob = torch.zeros(3, 4, 4)
    prob[0, :2, :1] = 0.9  # 2 of the 4, nothing else: Dice 2*2/(2+4)
    prob[0, 3, 3] = 0.5  # not above 0.5: not foreground
    prob[1, 3, 3] = 0.7  # a miss: Dice 0
    got = targets.scores(prob, masks)  # image 2: empty on empty scores 1
    assert got["dice"] == pytest.approx((4 / 6 + 0 + 1) / 3)
    assert got["dice_global"] == pytest.approx(2 * 2 / (3 + 5))
    assert got["foreground"] == pytest.approx(3 / 48)


def test_a_folder_without_a_run_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit, match="config.yaml not found: pass a finished semi=epi_lv"):
        targets.main([str(tmp_path)])
