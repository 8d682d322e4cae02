import numpy as np
import pytest
import torch

from tmc_lightning.metrics import GlobalDiceIoU, PerImageDiceIoU, per_image_scores


def logits_from(mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), 5.0, -5.0)


def masks(*rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[:, None]  # (B, 1, H, W)


def test_per_image_dice_iou_hand_made():
    pred = masks([[1, 1], [0, 0]])
    gt = masks([[1, 0], [0, 0]])
    dice, iou = per_image_scores(logits_from(pred), gt)
    assert dice.item() == pytest.approx(2 * 1 / (2 + 1))
    assert iou.item() == pytest.approx(1 / 2)


def test_empty_prediction_and_empty_target_conventions():
    empty, full = masks([[0, 0], [0, 0]]), masks([[1, 1], [1, 1]])
    assert per_image_scores(logits_from(empty), empty)[0].item() == 1.0  # both empty: 1
    assert per_image_scores(logits_from(empty), full)[0].item() == 0.0  # missed everything
    assert per_image_scores(logits_from(full), empty)[1].item() == 0.0  # all false positives


def test_per_image_vs_global_protocols_differ():
    # image 1: perfect on a large lesion; image 2: misses a small lesion entirely.
    pred = torch.zeros(2, 1, 4, 4)
    gt = torch.zeros(2, 1, 4, 4)
    gt[0, :, :3, :3] = 1
    pred[0, :, :3, :3] = 1
    gt[1, :, 0, 0] = 1
    per_image, glob = PerImageDiceIoU(), GlobalDiceIoU()
    per_image.update(logits_from(pred), gt)
    glob.update(logits_from(pred), gt)
    assert per_image.compute()["dice"].item() == pytest.approx(0.5)
    # global: tp=9, fp=0, fn=1 -> 18/19
    assert glob.compute()["dice_global"].item() == pytest.approx(18 / 19)
    assert glob.compute()["iou_global"].item() == pytest.approx(9 / 10)


def test_metric_accumulates_over_batches_like_one_batch():
    torch.manual_seed(0)
    logits, gt = torch.randn(6, 1, 8, 8), (torch.rand(6, 1, 8, 8) > 0.6).float()
    whole, parts = PerImageDiceIoU(), PerImageDiceIoU()
    whole.update(logits, gt)
    parts.update(logits[:2], gt[:2])
    parts.update(logits[2:], gt[2:])
    assert whole.compute()["dice"].item() == pytest.approx(parts.compute()["dice"].item())


def test_global_protocol_with_nothing_to_find_and_nothing_found():
    empty = torch.zeros(2, 1, 4, 4)
    glob = GlobalDiceIoU()
    glob.update(logits_from(empty), empty)
    assert glob.compute() == {"dice_global": 1.0, "iou_global": 1.0}
    assert per_image_scores(logits_from(empty[:1]), empty[:1])[1].item() == 1.0  # IoU too


def test_dice_by_lesion_size_bins_each_image_once():
    from tmc_lightning.evaluation.per_image import dice_by_coverage

    dice = np.array([1.0, 0.2, 0.4, 0.6, 0.9, 0.8, 0.7])
    coverage = np.array([0.0, 0.005, 0.009, 0.02, 0.5, 0.15, 0.149999])
    bins = dice_by_coverage(dice, coverage)
    assert [b["coverage"] for b in bins] == ["no lesion", "< 1%", "1%-5%", "5%-15%", ">= 15%"]
    assert [b["n"] for b in bins] == [1, 2, 1, 1, 2]
    assert sum(b["n"] for b in bins) == len(dice)
    assert bins[1]["dice"] == pytest.approx(0.3) and bins[4]["dice"] == pytest.approx(0.85)
    # empty bins are left out rather than reported as NaN
    only_large = dice_by_coverage(np.array([0.5]), np.array([0.3]))
    assert only_large == [{"coverage": ">= 15%", "n": 1, "dice": 0.5}]


def test_hd95_is_monais_symmetric_95th_percentile():
    from tmc_lightning.evaluation.per_image import hd95

    gt = np.zeros((40, 40), bool)
    gt[10:20, 10:20] = True
    shifted = np.roll(gt, 3, axis=1)
    assert hd95(shifted, gt) == pytest.approx(3.0)
    assert hd95(gt, gt) == 0.0
    assert np.isnan(hd95(np.zeros_like(gt), gt))
    # A false-positive blob far away: the directed distance pred -> gt carries it. The symmetric
    # HD95 is the larger of the two directed 95th percentiles, so it sees the blob even though
    # most boundary pixels (gt's own) are at distance 0.
    far = gt.copy()
    far[30:34, 30:34] = True
    assert hd95(far, gt) > 10


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    from tmc_lightning.metrics import bootstrap_mean_ci as bootstrap_ci

    rng = np.random.default_rng(1)
    values = rng.uniform(0.5, 1.0, 200)
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean() < hi and hi - lo < 0.1
    assert bootstrap_ci(values) == (lo, hi)  # seeded
    assert bootstrap_ci(np.full(5, 0.7)) == (0.7, 0.7)  # no spread: the mean itself
    # A percentile bootstrap of 5000 resamples drawn from default_rng(0), written out by hand.
    g = np.random.default_rng(0)
    means = values[g.integers(0, len(values), size=(5000, len(values)))].mean(1)
    assert (lo, hi) == pytest.approx((np.percentile(means, 2.5), np.percentile(means, 97.5)))


def test_tmc_eval_and_tmc_report_give_the_same_interval_for_the_same_scores():
    from tmc_lightning.evaluation import per_image, text_modes
    from tmc_lightning.reporting import stats

    rng = np.random.default_rng(2)
    dice = rng.uniform(0.2, 1.0, 150)
    rows = [{"dice": d, "tp": 10 * d, "pred_area": 10.0, "true_area": 10.0} for d in dice]
    from_eval = text_modes.mode_summary(rows)["dice_ci95"]
    # tmc-report's paired test: the CI of the mean difference against an all-zero run
    from_report = stats.bootstrap_mean_ci(dice - np.zeros_like(dice))
    assert from_eval == from_report
    assert per_image.bootstrap_mean_ci is stats.bootstrap_mean_ci
