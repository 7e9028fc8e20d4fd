"""HungarianAssigner3D: weighted matching costs and the optimal one-to-one assignment."""
import math

import pytest
import torch

from interlace.domains.driving.models.heads import HungarianAssigner3D

PC_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)


def box(x, y=0.0, size=1.0):
    return [x, y, 0.0, size, size, size, 0.0, 0.0, 0.0]


def test_cost_of_one_pair_matches_hand_computation():
    assigner = HungarianAssigner3D(PC_RANGE)
    pred = torch.tensor([box(1.08, size=2.0)])
    gt = torch.tensor([box(0.0, size=2.0)])
    cost, iou = assigner.cost_matrix(torch.zeros(1, 10), pred, gt, torch.tensor([3]))
    # p = 0.5: focal positive minus negative cost, alpha 0.25, gamma 2
    cls = -math.log(0.5) * 0.25 * 0.25 - (-math.log(0.5) * 0.75 * 0.25)
    l1 = 1.08 / 108.0                         # |dx| over the x extent, dy = 0
    inter = (2.0 - 1.08) * 2.0 * 2.0          # 3D overlap of two 2 m cubes shifted by 1.08 m
    iou_value = inter / (8.0 + 8.0 - inter)
    assert float(iou[0, 0]) == pytest.approx(iou_value, rel=1e-5)
    assert float(cost[0, 0]) == pytest.approx(0.15 * cls + 0.25 * l1 - 0.25 * iou_value, rel=1e-5)


def test_matches_each_gt_to_the_query_on_top_of_it():
    assigner = HungarianAssigner3D(PC_RANGE)
    preds = torch.tensor([box(10.0, 5.0, 2.0), box(-30.0, 30.0, 2.0), box(0.0, 0.0, 2.0)])
    gts = torch.tensor([box(0.2, 0.1, 2.0), box(10.1, 5.0, 2.0)])
    logits = torch.full((3, 10), -3.0)
    result = assigner.assign(logits, preds, gts, torch.tensor([0, 1]))
    assert result.gt_index.tolist() == [1, -1, 0]
    assert result.positive.tolist() == [True, False, True]
    assert result.ious[1] == 0 and (result.ious[[0, 2]] > 0.7).all()


def test_assignment_is_the_global_optimum_not_greedy():
    # Query 0 is nearest to both GTs; greedily giving it GT 0 would leave GT 1 to query 1,
    # 15 m away (total 4 + 15 m). The optimum pairs query 0 with GT 1 (6 m) and query 1
    # with GT 0 (5 m): total 11 m. Small far-apart boxes: every IoU is 0.
    assigner = HungarianAssigner3D(PC_RANGE)
    preds = torch.tensor([box(4.0), box(-5.0)])
    gts = torch.tensor([box(0.0), box(10.0)])
    result = assigner.assign(torch.zeros(2, 10), preds, gts, torch.tensor([2, 2]))
    assert result.gt_index.tolist() == [1, 0]


def test_classification_cost_breaks_a_geometric_tie():
    assigner = HungarianAssigner3D(PC_RANGE, iou_mode="bev")
    preds = torch.tensor([box(0.0), box(0.0)])         # both on the GT
    gts = torch.tensor([box(0.0)])
    logits = torch.full((2, 10), -4.0)
    logits[1, 7] = 4.0                                  # query 1 is confident in class 7
    result = assigner.assign(logits, preds, gts, torch.tensor([7]))
    assert result.gt_index.tolist() == [-1, 0]


def test_more_gts_than_queries_and_no_gts():
    assigner = HungarianAssigner3D(PC_RANGE)
    preds = torch.tensor([box(0.0), box(20.0)])
    gts = torch.tensor([box(0.0), box(20.0), box(-20.0)])
    result = assigner.assign(torch.zeros(2, 10), preds, gts, torch.tensor([0, 0, 0]))
    assert result.gt_index.tolist() == [0, 1]
    empty = assigner.assign(torch.zeros(2, 10), preds, torch.zeros(0, 9),
                            torch.zeros(0, dtype=torch.long))
    assert empty.gt_index.tolist() == [-1, -1] and empty.num_gts == 0


def test_an_exploded_size_prediction_does_not_break_the_matching():
    assigner = HungarianAssigner3D(PC_RANGE)
    preds = torch.tensor([box(0.0), box(3.0)])
    preds[1, 3:6] = float("inf")
    result = assigner.assign(torch.zeros(2, 10), preds, torch.tensor([box(0.0)]),
                             torch.tensor([0]))
    assert result.gt_index.tolist() == [0, -1] and torch.isfinite(result.ious).all()
