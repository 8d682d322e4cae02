import torch
import torch.nn.functional as F

from tmc_lightning.losses import (
    multi_stage_alignment_loss,
    same_text_matrix,
    sigmoid_alignment_loss,
    soft_dice_loss,
    task_loss,
)
from tmc_lightning.models.base import AlignFeatures


def feats(z_v, z_l, t=2.3, b=-2.0):
    return AlignFeatures(
        F.normalize(z_v, dim=-1), F.normalize(z_l, dim=-1), torch.tensor(t), torch.tensor(b)
    )


def test_alignment_lower_for_matched_than_shuffled_pairs():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    ids = torch.arange(8)[:, None].expand(8, 5)  # 8 distinct texts
    same = same_text_matrix(ids)
    matched = sigmoid_alignment_loss(feats(z, z + 0.05 * torch.randn(8, 16)), same)
    shuffled = sigmoid_alignment_loss(feats(z, z[torch.randperm(8)]), same)
    assert matched < shuffled


def test_identical_texts_count_as_positives():
    z = F.normalize(torch.randn(1, 16), dim=-1).expand(4, 16)  # every sample has the same features
    ids_same = torch.ones(4, 5, dtype=torch.long)
    ids_diff = torch.arange(4)[:, None].expand(4, 5)
    assert same_text_matrix(ids_same).all()
    assert same_text_matrix(ids_diff).equal(torch.eye(4, dtype=torch.bool))
    # Identical features for identical texts are consistent (low loss); for distinct texts they clash.
    low = sigmoid_alignment_loss(feats(z, z), same_text_matrix(ids_same))
    high = sigmoid_alignment_loss(feats(z, z), same_text_matrix(ids_diff))
    assert low < high


def test_alignment_loss_formula_by_hand():
    z_v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_l = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    t, b = torch.tensor(0.0), torch.tensor(0.0)  # exp(t) = 1
    same = torch.eye(2, dtype=torch.bool)
    loss = sigmoid_alignment_loss(AlignFeatures(z_v, z_l, t, b), same)
    s = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # cosine matrix
    y = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    expected = -F.logsigmoid(y * s).sum() / 2
    assert torch.isclose(loss, expected)
    assert torch.isclose(
        multi_stage_alignment_loss([AlignFeatures(z_v, z_l, t, b)] * 3, same), expected
    )


def test_task_loss_is_bce_plus_weighted_dice():
    logits, target = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    assert torch.isclose(task_loss(logits, target), bce)
    assert torch.isclose(task_loss(logits, target, 0.5), bce + 0.5 * soft_dice_loss(logits, target))
    perfect = torch.where(target.bool(), 20.0, -20.0)
    assert soft_dice_loss(perfect, target) < 1e-3
