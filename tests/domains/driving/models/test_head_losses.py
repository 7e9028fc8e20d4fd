"""Focal, Gaussian focal and L1 losses against values computed by hand."""
import math

import pytest
import torch

from interlace.domains.driving.models.heads import FocalLoss, GaussianFocalLoss, L1Loss


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_focal_loss_of_a_positive_and_a_negative_class():
    logits = torch.tensor([[0.0, 2.0]])
    p1 = sigmoid(2.0)
    # class 0 is a negative at p = 0.5: BCE log 2, weight (1 - alpha) * p^gamma
    negative = math.log(2.0) * 0.75 * 0.5 ** 2
    # class 1 is the positive at p1: BCE -log p1, weight alpha * (1 - p1)^gamma
    positive = -math.log(p1) * 0.25 * (1 - p1) ** 2
    loss = FocalLoss()(logits, torch.tensor([1]), avg_factor=2.0)
    assert float(loss) == pytest.approx((negative + positive) / 2.0, rel=1e-5)


def test_focal_loss_background_label_makes_every_class_negative():
    logits = torch.tensor([[0.0, 2.0]])
    p1 = sigmoid(2.0)
    expected = math.log(2.0) * 0.75 * 0.25 + (-math.log(1 - p1)) * 0.75 * p1 ** 2
    loss = FocalLoss(loss_weight=2.0)(logits, torch.tensor([2]), avg_factor=1.0)
    assert float(loss) == pytest.approx(2.0 * expected, rel=1e-5)
    # one-hot float targets give the same value as the background label
    same = FocalLoss(loss_weight=2.0)(logits, torch.zeros(1, 2), avg_factor=1.0)
    assert float(same) == pytest.approx(float(loss), rel=1e-6)


def test_focal_loss_without_avg_factor_is_the_mean_and_weights_apply():
    logits = torch.tensor([[0.0], [0.0]])
    target = torch.tensor([[1.0], [0.0]])
    element_pos = math.log(2.0) * 0.25 * 0.25
    element_neg = math.log(2.0) * 0.75 * 0.25
    assert float(FocalLoss()(logits, target)) == pytest.approx((element_pos + element_neg) / 2)
    weighted = FocalLoss()(logits, target, weight=torch.tensor([1.0, 0.0]), avg_factor=1.0)
    assert float(weighted) == pytest.approx(element_pos, rel=1e-5)


def test_gaussian_focal_loss_positive_and_reduced_negatives():
    pred = torch.tensor([0.5, 0.2, 0.9])
    target = torch.tensor([1.0, 0.5, 0.0])
    peak = -math.log(0.5) * 0.5 ** 2                        # (1 - p)^2 * -log p
    near = -math.log(0.8) * 0.2 ** 2 * (1 - 0.5) ** 4        # p^2 * -log(1 - p) * (1 - t)^4
    far = -math.log(0.1) * 0.9 ** 2
    loss = GaussianFocalLoss()(pred, target, avg_factor=1.0)
    assert float(loss) == pytest.approx(peak + near + far, rel=1e-5)


def test_l1_loss_with_element_weights_avg_factor_and_loss_weight():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 6.0]])
    weight = torch.tensor([[1.0, 0.2], [1.0, 1.0]])
    loss = L1Loss(loss_weight=0.25)(pred, target, weight, avg_factor=2.0)
    assert float(loss) == pytest.approx(0.25 * (1.0 + 0.4 + 0.0 + 2.0) / 2.0)
    assert float(L1Loss()(pred, target)) == pytest.approx((1 + 2 + 0 + 2) / 4)


def test_losses_are_differentiable():
    logits = torch.zeros(3, 4, requires_grad=True)
    FocalLoss()(logits, torch.tensor([0, 4, 2]), avg_factor=2.0).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
