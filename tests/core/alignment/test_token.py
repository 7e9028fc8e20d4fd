"""Token alignment: word-piece aggregation, weight clipping, and TokenAlignmentLoss."""
import math

import pytest
import torch

from interlace.core.alignment import (TokenAlignmentLoss, aggregate_word_pieces,
                                      clip_and_renormalise)
from interlace.core.engine.registry import MODELS

PIECES = ["[CLS]", "no", "pneum", "##oth", "##orax", "or", "cardio", "##me", "##galy", "[SEP]",
          "[PAD]"]


def test_aggregate_word_pieces_merges_sub_words_and_drops_special_tokens():
    emb = torch.arange(11 * 2, dtype=torch.float32).view(1, 11, 2).requires_grad_()
    weights = torch.arange(11, dtype=torch.float32).view(1, 11) / 10
    # A second, shorter sample (fewer pieces than T) exercises the word padding.
    emb2 = torch.cat([emb, emb.detach()], 0)
    weights2 = torch.cat([weights, weights], 0)
    words_emb, words_w, mask, words = aggregate_word_pieces(
        emb2, weights2, [PIECES, ["[CLS]", "clear", "[SEP]"]])
    assert words == [["no", "pneumothorax", "or", "cardiomegaly"], ["clear"]]
    assert words_emb.shape == (2, 4, 2) and words_w.shape == (2, 4)
    # Piece t has embedding (2t, 2t + 1) and weight t / 10.
    # no = piece 1; pneumothorax = 2 + 3 + 4; or = 5; cardiomegaly = 6 + 7 + 8.
    expected = torch.tensor([[2.0, 3.0], [4 + 6 + 8, 5 + 7 + 9], [10.0, 11.0],
                             [12 + 14 + 16, 13 + 15 + 17]])
    torch.testing.assert_close(words_emb[0], expected)
    torch.testing.assert_close(words_w[0], torch.tensor([0.1, 0.9, 0.5, 2.1]))
    # Sample 2: "clear" is piece 1; the rest is padding (zero, masked).
    torch.testing.assert_close(words_emb[1], torch.tensor([[2.0, 3.0], [0, 0], [0, 0], [0, 0]]))
    assert mask.tolist() == [[False] * 4, [False, True, True, True]]
    words_emb.sum().backward()  # differentiable: each kept piece's gradient is 1
    assert emb.grad[0, :, 0].tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]


def test_aggregate_word_pieces_leading_continuation_starts_a_word():
    emb, weights = torch.ones(1, 4, 3), torch.ones(1, 4)
    _, w, _, words = aggregate_word_pieces(emb, weights, [["[CLS]", "##ing", "##s", "[SEP]"]])
    assert words == [["ings"]] and w.tolist() == [[2.0]]


def test_clip_and_renormalise_clips_to_10_90_percentiles_and_keeps_padding_zero():
    # Valid weights 0..10 (11 values): linear-interpolated quantiles are q10 = 1, q90 = 9,
    # so 0 -> 1 and 10 -> 9; the clipped sum is 1 + (1 + ... + 9) + 9 = 55.
    valid = torch.arange(11, dtype=torch.float64)
    weights = torch.cat([valid, torch.tensor([100.0, 100.0], dtype=torch.float64)])[None]
    mask = torch.tensor([[False] * 11 + [True, True]])
    out = clip_and_renormalise(weights, mask)
    expected = torch.tensor([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0, 0], dtype=torch.float64) / 55
    torch.testing.assert_close(out, expected[None])
    # Random rows: sums are 1, padding is 0, all valid values inside the rescaled range.
    w = torch.rand(3, 7)
    m = torch.rand(3, 7) < 0.3
    m[:, 0] = False
    out = clip_and_renormalise(w, m)
    torch.testing.assert_close(out.sum(1), torch.ones(3))
    assert (out[m] == 0).all()


def test_clip_and_renormalise_degenerate_rows():
    weights = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[False, False, True], [True, True, True]])
    out = clip_and_renormalise(weights, mask)
    # Row 0: valid weights all zero -> uniform over the valid ones; row 1: nothing valid.
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_token_loss_matches_hand_computed_example():
    # Two words e1, e2 and two patches e1, e2; attention temperature 1, matching T = 0.1.
    # Word 1 attends [sigma(1), sigma(-1)] (softmax of [1, 0]); its normalised context
    # (s1 e1 + s0 e2) / n with n = sqrt(s1^2 + s0^2). word_i . context_j = s1 / n (i = j)
    # or s0 / n (i != j), so each row's CE = log(1 + exp(-(s1 - s0) / n / 0.1)), the same in
    # both directions and, by symmetry, for the patch part; weights sum to 1, hence
    # s1 = 0.731059, s0 = 0.268941, n = 0.778958, (s1 - s0) / n = 0.593250, so
    # loss = 2 * log(1 + exp(-5.93250)) = 2 * log(1.0026518) = 2 * 0.0026483 = 0.0052967.
    s1, s0 = _sigmoid(1.0), _sigmoid(-1.0)
    margin = (s1 - s0) / math.sqrt(s1 ** 2 + s0 ** 2)
    expected = 2 * math.log1p(math.exp(-margin / 0.1))
    assert expected == pytest.approx(0.0052967, abs=1e-6)
    eye = torch.eye(2, dtype=torch.float64)[None]
    loss_fn = TokenAlignmentLoss(attention_temperature=1.0, temperature=0.1)
    out = loss_fn(eye, None, torch.tensor([[0.3, 0.7]]), eye, torch.tensor([[2.0, 1.0]]))
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)
    assert out.word_loss.item() == pytest.approx(expected / 2, rel=1e-9)
    torch.testing.assert_close(out.word_to_patch_attention[0],
                               torch.tensor([[s1, s0], [s0, s1]], dtype=torch.float64))
    # A padding word (any embedding, any weight) changes nothing.
    words = torch.cat([eye, torch.tensor([[[5.0, -3.0]]], dtype=torch.float64)], 1)
    padded = loss_fn(words, torch.tensor([[False, False, True]]), torch.tensor([[0.3, 0.7, 9.0]]),
                     eye, None)
    assert padded.loss.item() == pytest.approx(expected, rel=1e-9)
    assert padded.word_to_patch_attention.shape == (1, 3, 2)


def test_token_loss_attention_points_at_matching_patch_and_gradients_flow():
    torch.manual_seed(0)
    patches = torch.randn(2, 6, 8, requires_grad=True)
    # Word k is (close to) patch k: it must attend mostly to that patch.
    words = (patches.detach()[:, :3] + 0.05 * torch.randn(2, 3, 8)).requires_grad_()
    mask = torch.tensor([[False, False, False], [False, False, True]])
    out = MODELS.build(dict(type="TokenAlignmentLoss"))(words, mask, torch.rand(2, 3), patches,
                                                         torch.rand(2, 6))
    attention = out.word_to_patch_attention
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 3))
    assert attention.argmax(-1)[0].tolist() == [0, 1, 2]
    out.loss.backward()
    for grad in (words.grad, patches.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert words.grad[1, 2].abs().sum() == 0  # the padding word takes no part


def test_word_mask_and_weights_defaults_to_no_padding_and_uniform_weights():
    from interlace.core.alignment.token import word_mask_and_weights

    words = torch.randn(2, 3, 4, dtype=torch.float64)
    mask, weights = word_mask_and_weights(words, None, None)
    assert mask.tolist() == [[False] * 3] * 2 and weights.dtype == torch.float64
    torch.testing.assert_close(weights, torch.full((2, 3), 1 / 3, dtype=torch.float64))
    padding = torch.tensor([[False, False, True], [False, False, False]])
    raw = torch.tensor([[1.0, 3.0, 99.0], [1.0, 1.0, 2.0]], requires_grad=True)
    mask, weights = word_mask_and_weights(words, padding, raw, (0.0, 1.0))
    assert mask is padding and not weights.requires_grad  # detached: weights only count
    torch.testing.assert_close(weights, torch.tensor([[0.25, 0.75, 0.0], [0.25, 0.25, 0.5]],
                                                     dtype=torch.float64))
