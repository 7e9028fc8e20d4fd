"""Word->patch attention of MGCA, measured against masks and drawn as a heat map."""
import numpy as np
import pytest
import torch

from interlace.domains.medical.evaluation.token_attention import (
    attention_mass_in_mask, attention_peak_hits, finding_words, save_attention_overlay,
    word_patch_attention)


def test_finding_words_pick_location_words_and_skip_negations():
    words = "there is a focal right lower lobe opacity . no pleural effusion . small left " \
            "pleural effusion".split()
    found = finding_words(words)
    assert [(words[i], f, r) for i, f, r in found] == [
        ("right", "opacity", "side"), ("lower", "opacity", "zone"),
        ("opacity", "opacity", "finding"), ("left", "effusion", "side"),
        ("effusion", "effusion", "finding")]


def test_attention_mass_counts_the_covered_share_of_each_patch():
    attention = torch.zeros(4, 4)
    attention[0, 0] = 1.0
    mask = np.zeros((16, 16), bool)
    mask[:4, :2] = True  # half of patch (0, 0)
    mass, chance = attention_mass_in_mask(attention, mask)
    assert mass == pytest.approx(0.5)
    assert chance == pytest.approx(8 / 256)
    uniform = torch.full((4, 4), 1 / 16)
    assert attention_mass_in_mask(uniform, mask)[0] == pytest.approx(chance)


def _peak_at(row: int, col: int, side: int = 4) -> torch.Tensor:
    attention = torch.full((side, side), 0.01)
    attention[row, col] = 0.5
    return attention


def test_peak_hits_on_the_mask_its_side_and_its_quadrant():
    # 16 x 16 image, 4 x 4 patches of 4 px; the mask is the left half of patch (1, 0):
    # centroid (row 6, col 1), in the upper-left quadrant.
    mask = np.zeros((16, 16), bool)
    mask[4:8, 0:2] = True
    chances = dict(point=1 / 16, side=0.5, quadrant=0.25)
    expected = {(1, 0): (True, True, True),     # on the mask
                (0, 1): (False, True, True),    # next to it, same quadrant
                (3, 1): (False, True, False),   # same side, lower half
                (1, 2): (False, False, False),  # other side of the midline
                (3, 3): (False, False, False)}
    for (row, col), hits in expected.items():
        result = attention_peak_hits(_peak_at(row, col), mask)
        assert tuple(result[name][0] for name in ("point", "side", "quadrant")) == hits, \
            (row, col)
        assert {name: value[1] for name, value in result.items()} == pytest.approx(chances)


def test_peak_hits_count_a_patch_on_the_midline_on_neither_side():
    # 3 x 3 patches of 3 px on a 9 x 9 image: the middle column's centre is on the midline.
    mask = np.zeros((9, 9), bool)
    mask[6:9, 0:3] = True  # lower-left patch: point chance 1/9
    result = attention_peak_hits(_peak_at(2, 1, side=3), mask)
    assert result["side"] == (False, pytest.approx(1 / 3))
    assert result["quadrant"] == (False, pytest.approx(1 / 9))
    assert attention_peak_hits(_peak_at(2, 0, side=3), mask)["point"] == (True,
                                                                         pytest.approx(1 / 9))


def test_peak_hits_count_any_overlap_as_on_the_mask_and_refuse_bad_masks():
    mask = np.zeros((16, 16), bool)
    mask[7, 7] = True  # one pixel of patch (1, 1)
    assert attention_peak_hits(_peak_at(1, 1), mask)["point"] == (True, 1 / 16)
    with pytest.raises(ValueError, match="the mask is empty"):
        attention_peak_hits(_peak_at(0, 0), np.zeros((16, 16), bool))
    with pytest.raises(ValueError, match="mask 2x2 is smaller than the 4x4 attention map"):
        attention_peak_hits(_peak_at(0, 0), np.ones((2, 2), bool))


def test_word_patch_attention_maps_sum_to_one_and_the_overlay_is_written(tmp_path):
    from interlace.domains.medical.models import MGCA

    bert = dict(model_type="bert", vocab_size=40, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    vocab = ["right", "lower", "lobe", "opacity", "."]
    model = MGCA(image_encoder=dict(type="ResNetImageEncoder", depth=18),
                 text_encoder=dict(type="ReportTextEncoder", config=bert, num_layers=1,
                                   vocab=vocab),
                 embed_dims=8, hidden_dims=16, loss_weights=dict(prototype=0.0))
    model.train()
    result = word_patch_attention(model, torch.randn(1, 64, 64), "right lower lobe opacity.")
    assert model.training  # mode restored
    assert result.words == ["right", "lower", "lobe", "opacity", "."]
    assert result.attention.shape == (5, 4, 4)
    torch.testing.assert_close(result.attention.sum(dim=(1, 2)), torch.ones(5))
    png = save_attention_overlay(tmp_path / "heat.png", np.random.rand(64, 64),
                                 [("opacity", result.attention[3])],
                                 mask=np.pad(np.ones((8, 8), bool), 28))
    assert png.stat().st_size > 1000


def test_word_patch_attention_of_a_local_matching_model_on_a_layer2_grid():
    from interlace.domains.medical.models import MGCA

    bert = dict(model_type="bert", vocab_size=40, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = MGCA(image_encoder=dict(type="ResNetImageEncoder", depth=18, local_stage=2),
                 text_encoder=dict(type="ReportTextEncoder", config=bert, num_layers=1,
                                   vocab=["left", "pleural", "effusion"]),
                 embed_dims=8, hidden_dims=16,
                 local_matching_loss=dict(type="LocalMatchingLoss", attention_temperature=0.5),
                 loss_weights=dict(token=0.0, prototype=0.0, local_matching=1.0))
    image = torch.randn(1, 64, 64)
    result = word_patch_attention(model, image, "left pleural effusion")
    assert result.attention.shape == (3, 8, 8)  # layer2: stride 8
    # The temperature is the matching loss's: 0.5 here, so 0.1 gives sharper maps.
    sharper = word_patch_attention(model, image, "left pleural effusion", temperature=0.1)
    assert sharper.attention.amax() > result.attention.amax()
