"""InstanceContrastiveLoss: hand-computed value, symmetry, temperature, gradients, registry."""
import math

import pytest
import torch

from interlace.core.alignment import InstanceContrastiveLoss
from interlace.core.engine.registry import MODELS


def test_instance_loss_matches_hand_computed_2x2():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    # T = 0.5: logits = a @ b.T / T = [[0.6, 0], [0.8, 1]] / 0.5 = [[1.2, 0], [1.6, 2]].
    # a->b rows: log(1 + e^(0 - 1.2)) and log(1 + e^(1.6 - 2)) -> mean of 0.263282, 0.513015
    # b->a rows (logits.T = [[1.2, 1.6], [0, 2]]): log(1 + e^0.4), log(1 + e^-2)
    #   -> mean of 0.913015, 0.126928
    # loss = (0.388149 + 0.519971) / 2 = 0.454060
    a_to_b = (math.log1p(math.exp(-1.2)) + math.log1p(math.exp(-0.4))) / 2
    b_to_a = (math.log1p(math.exp(0.4)) + math.log1p(math.exp(-2.0))) / 2
    expected = (a_to_b + b_to_a) / 2
    assert expected == pytest.approx(0.454060, abs=1e-6)
    loss = InstanceContrastiveLoss(temperature=0.5)(a, b)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_instance_loss_normalises_and_is_symmetric():
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    loss = InstanceContrastiveLoss()
    torch.testing.assert_close(loss(a, b), loss(b, a))
    torch.testing.assert_close(loss(3 * a, b), loss(a, b))


def test_instance_loss_gradients_reach_both_inputs_and_temperature():
    a = torch.randn(4, 6, requires_grad=True)
    b = torch.randn(4, 6, requires_grad=True)
    loss_fn = InstanceContrastiveLoss(temperature=0.07, learnable_temperature=True)
    assert isinstance(loss_fn.logit_scale, torch.nn.Parameter)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    loss_fn(a, b).backward()
    for grad in (a.grad, b.grad, loss_fn.logit_scale.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_learnable_temperature_is_clamped_at_logit_scale_100():
    loss_fn = InstanceContrastiveLoss(learnable_temperature=True)
    with torch.no_grad():
        loss_fn.logit_scale.fill_(10.0)  # 1/T = e^10 would be far beyond CLIP's 100
    assert loss_fn.temperature == pytest.approx(0.01)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    ref = InstanceContrastiveLoss(temperature=0.01)(a, b)
    torch.testing.assert_close(loss_fn(a, b), ref)


def test_fixed_temperature_is_a_buffer_and_module_is_registered():
    loss_fn = MODELS.build(dict(type="InstanceContrastiveLoss", temperature=0.1))
    assert isinstance(loss_fn, InstanceContrastiveLoss)
    assert list(loss_fn.parameters()) == []
    assert loss_fn.temperature == pytest.approx(0.1)
    with pytest.raises(ValueError):
        loss_fn(torch.randn(3, 4), torch.randn(2, 4))
