"""CxrDiceMetric: MONAI Dice per image, averaged over all images, empty masks scored."""
import math

import pytest
import torch

from interlace.core.engine.registry import METRICS
from interlace.domains.medical.evaluation.dice import CxrDiceMetric  # noqa: F401  registers it


def _outputs():
    """Three 4 x 4 images, with Dice computed by hand:
    0: prediction 2 x 2 inside a 2 x 3 ground truth: 2 * 4 / (4 + 6) = 0.8;
    1: empty ground truth, empty prediction: 1 (nothing to find, nothing claimed);
    2: empty ground truth, one false-positive pixel: 0."""
    probs, gts = torch.zeros(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)
    probs[0, 0, :2, :2] = 0.9
    probs[0, 0, 3, 3] = 0.4          # below the threshold: not foreground
    gts[0, 0, :2, :3] = 1
    probs[2, 0, 0, 0] = 0.7
    return [dict(seg_prob=p, gt_seg_map=g) for p, g in zip(probs, gts)]


def test_dice_matches_a_hand_computed_example_over_several_batches():
    metric = METRICS.build(dict(type="CxrDiceMetric", threshold=0.5))
    outputs = _outputs()
    metric.process({}, outputs[:2])
    metric.process({}, outputs[2:])
    result = metric.evaluate(size=3)
    assert result["seg/dice"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert result["seg/dice_nonempty_gt"] == pytest.approx(0.8)
    assert result["seg/num_images"] == 3 and result["seg/num_empty_gt"] == 2


def test_all_empty_ground_truth_gives_nan_for_the_nonempty_mean():
    metric = METRICS.build(dict(type="CxrDiceMetric"))
    metric.process({}, _outputs()[1:])
    result = metric.evaluate(size=2)
    assert result["seg/dice"] == pytest.approx(0.5)
    assert math.isnan(result["seg/dice_nonempty_gt"])


def test_outputs_without_the_prediction_key_are_named():
    metric = METRICS.build(dict(type="CxrDiceMetric", pred_key="probs"))
    with pytest.raises(KeyError, match="probs"):
        metric.process({}, _outputs())
