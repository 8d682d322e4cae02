"""Fewer masks: the labelled subset, mixed batches, EMA teacher, EPI average, LV loss and bank."""

import numpy as np
import pytest
import torch

from tmc_lightning.data.labels import MixedBatchSampler, labelled_flags
from tmc_lightning.errors import ConfigError
from tmc_lightning.training.semi import SemiConfig, make_semi
from tmc_lightning.training.semi_ops import (
    build_references,
    ema_update,
    epi_update,
    lv_loss,
    rampup,
    strong_view,
    warp,
)


def test_labelled_subset_depends_on_names_fraction_and_seed_only():
    names = [f"img{i:03d}.png" for i in range(40)]
    flags = labelled_flags(names, 0.25, seed=3)
    assert flags.sum() == 10
    # another listing order: the same images
    order = np.random.default_rng(0).permutation(40)
    shuffled = labelled_flags([names[i] for i in order], 0.25, seed=3)
    assert {names[i] for i in order[shuffled]} == {
        n for n, f in zip(names, flags, strict=True) if f
    }
    assert not np.array_equal(flags, labelled_flags(names, 0.25, seed=4))
    assert labelled_flags(names, 1.0, seed=3).all()
    assert labelled_flags(names, 0.001, seed=3).sum() == 1  # at least one
    with pytest.raises(ConfigError, match="label_fraction"):
        labelled_flags(names, 0.0, seed=3)


def test_mixed_batches_hold_labelled_then_unlabelled_and_resume_mid_epoch():
    flags = np.zeros(20, dtype=bool)
    flags[[1, 5, 9]] = True
    s = MixedBatchSampler(flags, labelled=2, unlabelled=3, seed=1)
    s.set_epoch(2)
    pairs = list(s)
    assert len(pairs) == len(s) == (17 // 3) * 5
    for b in range(0, len(pairs), 5):
        idx = [i for i, _ in pairs[b : b + 5]]
        assert all(flags[i] for i in idx[:2]) and not any(flags[i] for i in idx[2:])
    unl = [i for i, _ in pairs if not flags[i]]
    assert len(set(unl)) == len(unl)  # each unlabelled image at most once an epoch
    s.set_epoch(2)
    s.start = 10
    assert list(s) == pairs[10:]  # a resume skips what was trained, the rest unchanged
    s.set_epoch(3)
    assert list(s) != pairs


def test_ema_update_against_hand_computed_values():
    teacher, student = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([1.0, 2.0]))
        student.weight.copy_(torch.tensor([3.0, -4.0]))
        teacher.bias.zero_()
        student.bias.fill_(1.0)
        student.running_mean.fill_(7.0)
    ema_update(teacher, student, decay=0.9)
    # 0.9 x 1 + 0.1 x 3 = 1.2; 0.9 x 2 + 0.1 x (-4) = 1.4; 0.1 x 1 = 0.1
    torch.testing.assert_close(teacher.weight.data, torch.tensor([1.2, 1.4]))
    torch.testing.assert_close(teacher.bias.data, torch.tensor([0.1, 0.1]))
    torch.testing.assert_close(teacher.running_mean, torch.tensor([7.0, 7.0]))  # copied
    ema_update(teacher, student, decay=0.5)
    torch.testing.assert_close(teacher.weight.data, torch.tensor([2.1, -1.3]))


def test_epi_average_against_hand_computed_values():
    pred1, pred2 = torch.tensor([0.2, 1.0]), torch.tensor([1.0, 0.0])
    p0 = epi_update(None, pred1, beta=0.99)  # the first refresh: the prediction itself
    torch.testing.assert_close(p0, pred1)
    p1 = epi_update(p0, pred2, beta=0.99)
    torch.testing.assert_close(p1, torch.tensor([0.99 * 0.2 + 0.01, 0.99]))  # 0.208, 0.99
    p2 = epi_update(p1, pred2, beta=0.5)
    torch.testing.assert_close(p2, torch.tensor([0.604, 0.495]))


def test_lv_loss_is_zero_at_the_reference_and_grows_away_from_it():
    ref = torch.zeros(1, 1, 32, 32)
    ref[..., 8:16, 8:16] = 1
    assert lv_loss(ref, ref).item() == pytest.approx(0.0, abs=1e-6)
    assert lv_loss(0.5 * ref, ref).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    losses = [lv_loss(torch.roll(ref, shift, dims=-1), ref).item() for shift in (0, 2, 4, 6, 8)]
    assert all(a < b for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] == pytest.approx(1.0)  # no overlap left


def tokens(texts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, texts)) + 2
    ids = torch.zeros(len(texts), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for r, t in enumerate(texts):
        row = [2, *t, 3]  # [CLS] ... [SEP]
        ids[r, : len(row)] = torch.tensor(row)
        attn[r, : len(row)] = 1
    return ids, attn


def test_reference_bank_comes_from_labelled_masks_only():
    # texts: 10 11 = "upper left", 10 12 = "upper right", 13 12 = "lower right"
    ids, attn = tokens([[10, 11], [10, 11], [13, 12], [10, 11], [10, 12], [13, 12]])
    labelled = np.array([True, True, True, False, False, False])
    masks = np.zeros((6, 4, 4), dtype=np.uint8)
    masks[0, 0, 0] = masks[1, 0, 1] = 1  # the two "upper left" masks
    masks[2, 3, 3] = 1
    masks[3:] = 1  # the unlabelled images' true masks: all foreground
    refs, ref_of = build_references(ids, attn, masks, labelled)
    assert ref_of.tolist() == [0, 1, 2]  # one reference per distinct unlabelled text
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[0, 0] = expected[0, 1] = 0.5  # the mean of the labelled "upper left" masks
    np.testing.assert_allclose(refs[0].numpy(), expected)
    # "upper right" ties between "upper left" and "lower right": the earlier text wins
    torch.testing.assert_close(refs[1], refs[0])
    np.testing.assert_allclose(refs[2].numpy(), masks[2].astype(np.float32))  # exact text
    # Hide (change) every unlabelled mask: the references do not move ...
    hidden = masks.copy()
    hidden[3:] = 0
    for a, b in zip(build_references(ids, attn, hidden, labelled), (refs, ref_of), strict=True):
        torch.testing.assert_close(a, b)
    # ... while a labelled mask does reach them.
    changed = masks.copy()
    changed[2] = 1
    assert not torch.equal(build_references(ids, attn, changed, labelled)[0], refs)


def test_strong_view_moves_the_target_with_the_image():
    g = torch.Generator().manual_seed(0)
    image = torch.full((2, 3, 32, 32), -1.0)
    image[:, :, 10:20, 12:18] = 1.0
    mask = (image[:, :1] > 0).float()
    view, theta, valid = strong_view(image, 0.0, g)  # strength 0: identity, no noise
    torch.testing.assert_close(view, image)
    assert valid.all()
    view, theta, valid = strong_view(image, 2.0, torch.Generator().manual_seed(1))
    moved = warp(mask, theta)
    bright = view[:, :1] > view[:, :1].mean()
    inside = (moved > 0.5) & valid
    assert (bright[inside]).float().mean() > 0.95  # the warped target lies on the lesion
    assert not torch.equal(moved, mask)


def test_rampup_and_config_checks():
    assert rampup(0, 0) == 1.0 and rampup(100, 100) == 1.0
    assert rampup(0, 100) == pytest.approx(np.exp(-5)) and rampup(50, 100) < rampup(80, 100)
    assert make_semi(SemiConfig(), 1.0, 0, 0.0, True) is None  # today's path
    assert make_semi(SemiConfig(), 0.5, 0, 0.0, True) is not None  # writes labelled.txt
    with pytest.raises(ConfigError, match="label_fraction"):
        make_semi(SemiConfig(method="mean_teacher"), 1.0, 0, 0.0, True)
    with pytest.raises(ConfigError, match="lv_weight=0"):
        make_semi(SemiConfig(method="epi_lv"), 0.5, 0, 0.0, uses_text=False)
    assert make_semi(SemiConfig(method="epi_lv", lv_weight=0), 0.5, 0, 0.0, False) is not None
    with pytest.raises(ConfigError, match="semi.method"):
        SemiConfig(method="fixmatch").check()
