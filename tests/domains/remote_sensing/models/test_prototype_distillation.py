"""PrototypeDistillationLoss: hand-computed value, centring, masking, gradients."""
import math

import pytest
import torch

from interlace.domains.remote_sensing.models.prototype_distillation import (
    PrototypeDistillationLoss)

from .test_pretrainer import _pretrainer
from .synthetic_batch import make_batch


def _loss(**kwargs) -> PrototypeDistillationLoss:
    loss = PrototypeDistillationLoss(embed_dims=2, num_prototypes=2, **kwargs)
    with torch.no_grad():
        loss.prototypes.copy_(torch.eye(2))  # c_0 = x axis, c_1 = y axis
    return loss


def test_value_matches_a_hand_computed_example():
    loss = _loss(student_temperature=0.5, teacher_temperature=0.25).eval()
    student = torch.tensor([[3.0, 4.0]])  # normalised (0.6, 0.8): scores (0.6, 0.8)
    teacher = torch.tensor([[1.0, 0.0]])  # scores (1, 0), centre 0
    # teacher target: softmax((1, 0) / 0.25) = (e^4, 1) / (e^4 + 1)
    q0 = math.exp(4) / (math.exp(4) + 1)
    # student log-probs: log softmax((0.6, 0.8) / 0.5) = (1.2, 1.6) - log(e^1.2 + e^1.6)
    lse = math.log(math.exp(1.2) + math.exp(1.6))
    expected = -(q0 * (1.2 - lse) + (1 - q0) * (1.6 - lse))
    assert loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_centre_is_an_ema_of_the_teacher_scores_and_shifts_the_targets():
    loss = _loss(center_momentum=0.9).train()
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    loss(torch.randn(4, 2), teacher)
    # mean teacher scores (0.5, 0.5); centre = 0.9 * 0 + 0.1 * 0.5
    assert torch.allclose(loss.center, torch.tensor([0.05, 0.05]))
    loss(torch.randn(4, 2), torch.tensor([[1.0, 0.0]] * 4))
    assert torch.allclose(loss.center, torch.tensor([0.9 * 0.05 + 0.1, 0.9 * 0.05]))
    # evaluation does not move it
    before = loss.center.clone()
    loss.eval()(torch.randn(4, 2), teacher)
    assert torch.equal(loss.center, before)


def test_invalid_rows_do_not_count_and_none_valid_gives_zero_with_a_graph():
    loss = _loss().eval()
    student = torch.randn(2, 3, 2, requires_grad=True)
    teacher = torch.randn(2, 3, 2)
    valid = torch.tensor([[True, False, True], [False, False, True]])
    masked = loss(student, teacher, valid)
    kept = loss(student[valid], teacher[valid])
    assert masked.item() == pytest.approx(kept.item(), rel=1e-6)
    none = loss(student, teacher, torch.zeros(2, 3, dtype=torch.bool))
    none.backward()
    assert none.item() == 0.0 and student.grad is not None


def test_gradients_reach_student_and_prototypes_not_teacher():
    loss = _loss().train()
    student = torch.randn(5, 2, requires_grad=True)
    teacher = torch.randn(5, 2, requires_grad=True)
    loss(student, teacher).backward()
    assert student.grad.abs().sum() > 0 and loss.prototypes.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bad_temperatures_and_shapes_are_refused():
    with pytest.raises(ValueError, match="teacher_temperature"):
        PrototypeDistillationLoss(4, student_temperature=0.04, teacher_temperature=0.1)
    with pytest.raises(ValueError, match="same shape"):
        _loss()(torch.randn(3, 2), torch.randn(4, 2))


def test_pretrainer_uses_it_for_pixel_and_image_levels():
    model = _pretrainer(distillation=dict(num_prototypes=8))
    assert model.image_loss is None
    assert set(model.distillation) == {f"{level}_{b}" for level in ("pixel", "image")
                                       for b in ("optical", "sar", "fused")}
    losses = model(**model.data_preprocessor(make_batch(), training=True), mode="loss")
    for branch in ("optical", "sar", "fused"):
        for term in ("pixel", "object", "image"):
            assert torch.isfinite(losses[f"loss_{term}_{branch}"])
    sum(losses.values()).backward()
    assert model.encoder.backbones["optical"].layers[0][0].weight.grad.abs().sum() > 0
    assert model.distillation["pixel_fused"].prototypes.grad.abs().sum() > 0
    assert (model.distillation["pixel_fused"].center != 0).any()
