"""Sinkhorn-Knopp marginals and PrototypeAlignmentLoss (hand example, gradients, freezing)."""
import math

import pytest
import torch

from interlace.core.alignment import PrototypeAlignmentLoss, sinkhorn_knopp
from interlace.core.engine.registry import MODELS


def test_sinkhorn_one_iteration_hand_computed():
    # epsilon = 1 and scores = log M give exp(scores) = M = [[2, 1], [1, 1]] (total 5).
    # Columns to 1/K = 1/2: [[2, 1], [1, 1]] / 5 -> col sums 3/5, 2/5 ->
    #   [[1/3, 1/4], [1/6, 1/4]]; rows to 1/N = 1/2: row sums 7/12, 5/12 ->
    #   [[2/7, 3/14], [1/5, 3/10]]; times N = 2: [[4/7, 3/7], [2/5, 3/5]].
    scores = torch.tensor([[2.0, 1.0], [1.0, 1.0]], dtype=torch.float64).log()
    codes = sinkhorn_knopp(scores, epsilon=1.0, iterations=1)
    expected = torch.tensor([[4 / 7, 3 / 7], [2 / 5, 3 / 5]], dtype=torch.float64)
    torch.testing.assert_close(codes, expected)
    # Rows sum to exactly 1, columns only approach N / K = 1 (34/35 and 36/35 here).
    torch.testing.assert_close(codes.sum(0), torch.tensor([34 / 35, 36 / 35], dtype=torch.float64))


def test_sinkhorn_marginals_after_3_and_many_iterations():
    scores = torch.nn.functional.normalize(torch.randn(24, 6, dtype=torch.float64), dim=1) * 0.5
    n, k = scores.shape
    raw = torch.softmax(scores / 0.05, dim=1)
    three = sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    many = sinkhorn_knopp(scores, epsilon=0.05, iterations=2000)
    target = torch.full((k,), n / k, dtype=torch.float64)
    # Documented: rows are exactly 1 always; columns reach N / K only with many iterations.
    torch.testing.assert_close(three.sum(1), torch.ones(n, dtype=torch.float64))
    torch.testing.assert_close(many.sum(1), torch.ones(n, dtype=torch.float64))
    torch.testing.assert_close(many.sum(0), target, atol=1e-5, rtol=0)
    # After 3 iterations the columns are much closer to N / K than the plain softmax.
    assert (three.sum(0) - target).abs().max() < 0.5 * (raw.sum(0) - target).abs().max()
    assert (three >= 0).all()


def test_sinkhorn_is_stable_in_float32():
    # Cosine scores in [-1, 1]: exp(1 / 0.05) = 5e8 per entry, handled in the log domain.
    cosine = torch.nn.functional.normalize(torch.randn(8, 5), dim=1)
    codes = sinkhorn_knopp(cosine, epsilon=0.05)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(8))
    # Far out of range (exp underflows to 0 for whole prototypes): no NaN, rows still 1.
    codes = sinkhorn_knopp(torch.randn(8, 5) * 10, epsilon=0.05)
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(8))


def _identity_prototypes(loss_fn):
    with torch.no_grad():
        loss_fn.prototypes.weight.copy_(torch.eye(2))


def test_prototype_loss_matches_hand_computed_example():
    # Prototypes = e1, e2; one sample per modality, a = b = e1, so scores = [1, 0].
    # With N = 1 the column step gives each prototype the same mass, so codes = [0.5, 0.5]
    # whatever the scores. Prediction softmax([1, 0] / 0.2) = [sigma(5), sigma(-5)];
    # CE = -0.5 (log sigma(5) + log sigma(-5)) = 0.5 (log(1 + e^-5) + log(1 + e^5))
    #    = 0.5 (0.0067153 + 5.0067153) = 2.5067153, the same in both directions.
    expected = 0.5 * (math.log1p(math.exp(-5)) + math.log1p(math.exp(5)))
    assert expected == pytest.approx(2.5067153, abs=1e-6)
    loss_fn = PrototypeAlignmentLoss(embed_dims=2, num_prototypes=2)
    _identity_prototypes(loss_fn)
    e1 = torch.tensor([[1.0, 0.0]])
    assert loss_fn(e1, e1).item() == pytest.approx(expected, abs=1e-5)
    # Two samples e1, e2 in both modalities: scores = I, already balanced, so the codes are
    # the row-normalised exp(I / 0.05): [[sigma(20), sigma(-20)], ...]; each row's CE is
    # -(sigma(20) log sigma(5) + sigma(-20) log sigma(-5)) = 0.0067153 (+1e-8).
    eye = torch.eye(2)
    p, q = 1 / (1 + math.exp(-20)), 1 / (1 + math.exp(20))
    expected2 = p * math.log1p(math.exp(-5)) + q * math.log1p(math.exp(5))
    assert loss_fn(eye, eye).item() == pytest.approx(expected2, abs=1e-6)


def test_prototypes_are_renormalised_every_forward():
    loss_fn = PrototypeAlignmentLoss(embed_dims=4, num_prototypes=3)
    with torch.no_grad():
        loss_fn.prototypes.weight.mul_(7.0)
    loss_fn(torch.randn(5, 4), torch.randn(5, 4))
    torch.testing.assert_close(loss_fn.prototypes.weight.norm(dim=1), torch.ones(3))


def test_prototype_loss_gradients_and_freezing():
    loss_fn = MODELS.build(dict(type="PrototypeAlignmentLoss", embed_dims=8, num_prototypes=5,
                                freeze_epochs=1))
    assert loss_fn.frozen
    a = torch.randn(6, 8, requires_grad=True)
    b = torch.randn(6, 8, requires_grad=True)
    loss_fn(a, b).backward()
    for grad in (a.grad, b.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert loss_fn.prototypes.weight.grad is None  # frozen: no gradient at all
    loss_fn.set_epoch(1)
    assert not loss_fn.frozen
    loss_fn(a, b).backward()
    grad = loss_fn.prototypes.weight.grad
    assert grad is not None and grad.abs().sum() > 0
