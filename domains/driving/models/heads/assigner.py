"""One-to-one matching of decoder queries to ground-truth boxes (TransFusion Sec. 3.3).

Every GT box gets exactly one query, the one minimising the total matching cost

    cost = 0.15 * focal classification cost
         + 0.25 * L1 distance of the BEV centres, normalised by the point-cloud range
         - 0.25 * IoU (3D by default, or BEV)

over all one-to-one assignments (Hungarian algorithm, ``scipy.optimize.
linear_sum_assignment``); all other queries are background. The weights are TransFusion's
nuScenes settings, kept by DeepInteraction.

Focal classification cost (Deformable DETR's ``FocalLossCost``): with p the sigmoid
probability of the GT's class, ``alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma
(-log(1 - p))``: the focal loss of calling the query positive minus that of calling it
negative for that class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from interlace.core.engine.registry import TASK_UTILS
from interlace.core.ops import bev_iou_rotated, iou_3d

__all__ = ["HungarianAssigner3D", "AssignResult", "focal_classification_cost"]

# Keeps log() finite at p = 0 or 1 (as mmdet's FocalLossCost).
_EPS = 1e-12
# Replaces NaN / inf costs so the solver never fails on a degenerate prediction.
_BIG_COST = 1e8


@dataclass
class AssignResult:
    """Matching of Q queries to N GT boxes.

    Attributes:
        gt_index: (Q,) long, the GT matched to each query, -1 for background.
        ious: (Q,) IoU of each query with its matched GT (0 for background).
        num_gts: N.
    """

    gt_index: Tensor
    ious: Tensor
    num_gts: int

    @property
    def positive(self) -> Tensor:
        """(Q,) bool, queries matched to a GT."""
        return self.gt_index >= 0


def focal_classification_cost(cls_logits: Tensor, gt_labels: Tensor, alpha: float = 0.25,
                              gamma: float = 2.0) -> Tensor:
    """(Q, K) logits, (N,) labels -> (Q, N) focal classification cost (module docstring)."""
    p = cls_logits.sigmoid()
    neg = -(1 - p + _EPS).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + _EPS).log() * alpha * (1 - p).pow(gamma)
    return pos[:, gt_labels] - neg[:, gt_labels]


@TASK_UTILS.register_module()
class HungarianAssigner3D:
    """Hungarian matching of 3D box predictions to GT boxes.

    Args:
        pc_range: (x0, y0, z0, x1, y1, z1); centres are normalised by its x / y extent
            before the L1 cost (so the cost does not depend on the range's size).
        cls_weight, reg_weight, iou_weight: cost weights (0.15 / 0.25 / 0.25).
        iou_mode: '3d' (TransFusion's ``IoU3DCost``) or 'bev' (rotated BEV IoU).
        alpha, gamma: of the focal classification cost.
    """

    def __init__(self, pc_range: Sequence[float], cls_weight: float = 0.15,
                 reg_weight: float = 0.25, iou_weight: float = 0.25, iou_mode: str = "3d",
                 alpha: float = 0.25, gamma: float = 2.0) -> None:
        if len(pc_range) != 6:
            raise ValueError(f"pc_range must be (x0, y0, z0, x1, y1, z1), got {pc_range}")
        if iou_mode not in ("3d", "bev"):
            raise ValueError(f"iou_mode must be '3d' or 'bev', got {iou_mode!r}")
        self.pc_range = tuple(float(v) for v in pc_range)
        self.cls_weight, self.reg_weight = float(cls_weight), float(reg_weight)
        self.iou_weight = float(iou_weight)
        self.iou_mode = iou_mode
        self.alpha, self.gamma = float(alpha), float(gamma)

    def _normalised_xy(self, boxes: Tensor) -> Tensor:
        lo = boxes.new_tensor(self.pc_range[:2])
        span = boxes.new_tensor([self.pc_range[3] - self.pc_range[0],
                                 self.pc_range[4] - self.pc_range[1]])
        return (boxes[:, :2] - lo) / span

    def iou(self, boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        """(Q, 7+), (N, 7+) geometric-centre boxes -> (Q, N) IoU of the chosen mode."""
        return (iou_3d if self.iou_mode == "3d" else bev_iou_rotated)(boxes, gt_boxes)

    @torch.no_grad()
    def cost_matrix(self, cls_logits: Tensor, boxes: Tensor, gt_boxes: Tensor,
                    gt_labels: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted matching cost and IoU of every (query, GT) pair.

        Args:
            cls_logits: (Q, K) class logits of the queries.
            boxes: (Q, 7+) predicted boxes (metres, geometric centre).
            gt_boxes: (N, 7+) GT boxes, same convention.
            gt_labels: (N,) long class indices.

        Returns:
            cost (Q, N) and IoU (Q, N).
        """
        cls_cost = focal_classification_cost(cls_logits.float(), gt_labels.long(),
                                             self.alpha, self.gamma)
        reg_cost = torch.cdist(self._normalised_xy(boxes.float()),
                               self._normalised_xy(gt_boxes.float()), p=1)
        # An untrained size head can decode to inf metres: such pairs simply get no IoU.
        iou = torch.nan_to_num(self.iou(boxes.float(), gt_boxes.float()), nan=0.0)
        cost = self.cls_weight * cls_cost + self.reg_weight * reg_cost - self.iou_weight * iou
        return torch.nan_to_num(cost, nan=_BIG_COST, posinf=_BIG_COST, neginf=-_BIG_COST), iou

    @torch.no_grad()
    def assign(self, cls_logits: Tensor, boxes: Tensor, gt_boxes: Tensor,
               gt_labels: Tensor) -> AssignResult:
        """Match queries to GTs (shapes as :meth:`cost_matrix`). With more GTs than
        queries, only Q GTs are matched (the cheapest overall assignment)."""
        q, n = boxes.shape[0], gt_boxes.shape[0]
        gt_index = torch.full((q,), -1, dtype=torch.long, device=boxes.device)
        ious = boxes.new_zeros(q, dtype=torch.float32)
        if n == 0 or q == 0:
            return AssignResult(gt_index=gt_index, ious=ious, num_gts=n)
        cost, iou = self.cost_matrix(cls_logits, boxes, gt_boxes, gt_labels)
        rows, cols = linear_sum_assignment(cost.cpu().numpy().astype(np.float64))
        rows_t = torch.as_tensor(rows, dtype=torch.long, device=boxes.device)
        cols_t = torch.as_tensor(cols, dtype=torch.long, device=boxes.device)
        gt_index[rows_t] = cols_t
        ious[rows_t] = iou[rows_t, cols_t]
        return AssignResult(gt_index=gt_index, ious=ious, num_gts=n)
