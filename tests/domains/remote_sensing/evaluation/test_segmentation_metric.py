from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from interlace.core.engine.registry import METRICS
from interlace.domains.remote_sensing.evaluation import ChangeF1, SegmentationMetric, confusion_matrix


def test_scores_match_hand_computed_confusion_matrix():
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    # rows gt, cols pred (255 left out): gt0 -> [1,1,0]; gt1 -> [0,2,1]; gt2 -> [1,0,1]
    np.testing.assert_array_equal(confusion_matrix(pred, gt, 3), [[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    metric = METRICS.build(dict(type="SegmentationMetric", num_classes=3))
    metric.dataset_meta = dict(classes=("water", "urban", "bare"))
    # Two batches, data element and dict forms; gt taken from the input batch for one.
    metric.process(dict(data_samples=[BaseDataElement(gt_sem_seg=gt[:1])]),
                   [dict(pred_sem_seg=dict(data=pred[:1][None]))])
    metric.process({}, [BaseDataElement(pred_sem_seg=pred[1:], gt_sem_seg=gt[1:])])
    result = metric.evaluate(2)
    # IoU: c0 1/(1+1+1)=1/3, c1 2/(2+1+1)=1/2, c2 1/(1+2+1)... fp2=1, fn2=1 -> 1/3
    assert result["seg/IoU.water"] == pytest.approx(1 / 3)
    assert result["seg/IoU.urban"] == pytest.approx(1 / 2)
    assert result["seg/IoU.bare"] == pytest.approx(1 / 3)
    assert result["seg/mIoU"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    # F1 = 2TP / (2TP + FP + FN): 2/4, 4/6, 2/4
    assert result["seg/mF1"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert result["seg/OA"] == pytest.approx(4 / 7)


def test_absent_class_is_left_out_of_the_mean():
    metric = SegmentationMetric(num_classes=3, class_names=("a", "b", "c"))
    metric.process({}, [dict(pred_sem_seg=torch.zeros(2, 2, dtype=torch.long),
                             gt_sem_seg=torch.zeros(2, 2, dtype=torch.long))])
    result = metric.compute_metrics(metric.results)
    assert result["mIoU"] == 1.0 and math.isnan(result["IoU.c"])


def test_out_of_range_prediction_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.tensor([5]), torch.tensor([0]), 3)


def test_change_f1():
    metric = ChangeF1()
    metric.process({}, [dict(pred_sem_seg=torch.tensor([1, 1, 0, 0]), gt_sem_seg=torch.tensor([1, 0, 1, 0]))])
    result = metric.compute_metrics(metric.results)
    assert result["precision"] == 0.5 and result["recall"] == 0.5 and result["F1"] == 0.5
