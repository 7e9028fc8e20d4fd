"""LocalMatchingLoss: GLoRIA-style word-region image-report scores contrasted over the batch."""
import math

import pytest
import torch

from interlace.core.alignment import LocalMatchingLoss
from interlace.core.engine.registry import MODELS


def _case():
    """2 reports of one word, 2 images of 2 patches, in 2-d (worked out by hand below)."""
    words = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])               # report 0: e1, 1: e2
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],                # image 0: e1, e2
                            [[0.0, 1.0], [0.0, 1.0]]])               # image 1: e2, e2
    return words, patches


def test_loss_and_scores_match_a_hand_computed_example():
    words, patches = _case()
    out = LocalMatchingLoss(attention_temperature=1.0, temperature=1.0)(words, None, None,
                                                                       patches)
    # Image 0 x report 0: attention softmax([1, 0]) = (a, 1 - a), a = e / (e + 1); the
    # context (a, 1 - a) has cosine a / sqrt(a^2 + (1 - a)^2) with e1. Image 0 x report 1
    # is the mirror case. Image 1 has only e2: cosine 0 with report 0, 1 with report 1.
    a = math.e / (math.e + 1)
    c = a / math.hypot(a, 1 - a)                                       # 0.9385
    torch.testing.assert_close(out.scores, torch.tensor([[c, c], [0.0, 1.0]]))
    image_to_report = 0.5 * (math.log(2.0) + math.log(1 + math.e) - 1.0)
    report_to_image = 0.5 * (math.log(1 + math.exp(-c)) + math.log(1 + math.exp(c - 1)))
    torch.testing.assert_close(out.loss, torch.tensor(0.5 * (image_to_report
                                                             + report_to_image)))
    # Each report's attention over its own image, rows summing to 1.
    torch.testing.assert_close(out.word_to_patch_attention[0, 0], torch.tensor([a, 1 - a]))
    torch.testing.assert_close(out.word_to_patch_attention[1, 0], torch.tensor([0.5, 0.5]))


def test_word_granularity_lets_each_word_pick_its_image():
    words, patches = _case()
    out = LocalMatchingLoss(attention_temperature=1.0, temperature=1.0,
                            granularity="word")(words, None, None, patches)
    # One word per report: report 0's word scores (c, 0) over images 0 and 1, report 1's
    # (c, 1); each picks its own image with cross-entropy (weights 1).
    a = math.e / (math.e + 1)
    c = a / math.hypot(a, 1 - a)
    expected = 0.5 * (math.log(1 + math.exp(-c)) + math.log(1 + math.exp(c - 1)))
    torch.testing.assert_close(out.loss, torch.tensor(expected))
    with pytest.raises(ValueError, match="granularity must be"):
        LocalMatchingLoss(granularity="sentence")


@pytest.mark.parametrize("granularity", ["report", "word"])
def test_padding_words_change_nothing_and_weights_scale_words(granularity):
    words, patches = _case()
    loss = LocalMatchingLoss(granularity=granularity)
    reference = loss(words, None, None, patches)
    padded = torch.cat([words, torch.randn(2, 1, 2)], dim=1)
    mask = torch.tensor([[False, True], [False, True]])
    out = loss(padded, mask, torch.tensor([[1.0, 50.0], [1.0, 50.0]]), patches)
    torch.testing.assert_close(out.loss, reference.loss)
    torch.testing.assert_close(out.scores, reference.scores)


def test_a_report_that_reads_best_in_its_own_image_has_a_lower_loss():
    torch.manual_seed(0)
    patches = torch.randn(4, 9, 8)
    # Each report's word points at patch 3 of its own image: matched, the loss is low.
    matched = patches[:, 3:4].clone()
    shuffled = matched[torch.tensor([1, 2, 3, 0])]
    loss = LocalMatchingLoss(attention_temperature=0.05, temperature=0.1)
    assert loss(matched, None, None, patches).loss < 0.1
    assert loss(shuffled, None, None, patches).loss > 2.0


@pytest.mark.parametrize("granularity", ["report", "word"])
def test_gradients_reach_words_and_patches(granularity):
    torch.manual_seed(0)
    words = torch.randn(3, 5, 8, requires_grad=True)
    patches = torch.randn(3, 16, 8, requires_grad=True)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[2, 3:] = True
    LocalMatchingLoss(granularity=granularity)(words, mask, torch.rand(3, 5),
                                               patches).loss.backward()
    assert words.grad[:, :3].abs().sum() > 0 and patches.grad.abs().sum() > 0
    assert words.grad[2, 3:].abs().sum() == 0  # padding words get no gradient


def test_bad_shapes_and_temperatures_are_refused():
    with pytest.raises(ValueError, match="words .B, W, D. and patches .B, N, D."):
        LocalMatchingLoss()(torch.randn(2, 3, 8), None, None, torch.randn(3, 4, 8))
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        LocalMatchingLoss(temperature=0.0)


def test_registered():
    assert isinstance(MODELS.build(dict(type="LocalMatchingLoss")), LocalMatchingLoss)
