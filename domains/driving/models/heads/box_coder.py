"""TransFusion's box coding: 3D boxes <-> regression targets in BEV-grid units.

A box ``(x, y, z, l, w, h, yaw, vx, vy)`` (geometric centre, see
:mod:`interlace.domains.driving.data.nuscenes_names`) is coded as the 10-vector

    (cx, cy, z, log l, log w, log h, sin yaw, cos yaw, vx, vy)

with ``(cx, cy)`` the centre in *grid coordinates* of the head's BEV map: metres from the
point-cloud range's lower corner divided by the cell size ``voxel_size * out_size_factor``
(cell j spans [j, j + 1), so a cell centre is j + 0.5). This is the layout of mmdet3d's
``TransFusionBBoxCoder`` (TransFusion, Bai et al. CVPR 2022, Sec. 3.2 "prediction
heads"). Without velocity (``code_size=8``) the last two entries are dropped.

Height: the target is the box's **geometric-centre** z. TransFusion's coder raises
mmdet3d's bottom-centre z by h / 2 before coding, so its target is the geometric centre
too; our boxes already are, so the value is used as is and decoding returns geometric
centres (no ``- h / 2`` on the way out, unlike mmdet3d).

Map convention (as :class:`~interlace.core.interaction.ProjectionCorrespondence`): map
row i <-> y, column j <-> x, the map covering ``pc_range``'s x / y extent.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from interlace.core.engine.registry import TASK_UTILS

__all__ = ["TransFusionBoxCoder"]

# log() of a zero-size GT box would be -inf; nuScenes boxes are >= a few centimetres.
_MIN_SIZE = 1e-3


@TASK_UTILS.register_module()
class TransFusionBoxCoder:
    """Encode boxes into TransFusion's BEV-grid regression targets and decode them back.

    Args:
        pc_range: (x0, y0, z0, x1, y1, z1) metres covered by the point cloud / BEV map.
        voxel_size: (vx, vy[, vz]) metres of one voxel of the sparse encoder.
        out_size_factor: BEV map stride in voxels (8 for the 180 x 180 nuScenes map).
        post_center_range: (x0, y0, z0, x1, y1, z1) metres; decoded boxes whose centre lies
            outside are dropped (TransFusion nuScenes: +-61.2 m, +-10 m). None keeps all.
        score_threshold: decoded boxes with a score <= this are dropped (0.0 as published).
        code_size: 10 with velocity, 8 without.
    """

    def __init__(self, pc_range: Sequence[float], voxel_size: Sequence[float],
                 out_size_factor: int = 8,
                 post_center_range: Optional[Sequence[float]] = (-61.2, -61.2, -10.0,
                                                                 61.2, 61.2, 10.0),
                 score_threshold: float = 0.0, code_size: int = 10) -> None:
        if len(pc_range) != 6:
            raise ValueError(f"pc_range must be (x0, y0, z0, x1, y1, z1), got {pc_range}")
        if code_size not in (8, 10):
            raise ValueError(f"code_size must be 8 (no velocity) or 10, got {code_size}")
        if post_center_range is not None and len(post_center_range) != 6:
            raise ValueError(f"post_center_range must have 6 values, got {post_center_range}")
        self.pc_range = tuple(float(v) for v in pc_range)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.out_size_factor = int(out_size_factor)
        self.post_center_range = (tuple(float(v) for v in post_center_range)
                                  if post_center_range is not None else None)
        self.score_threshold = float(score_threshold)
        self.code_size = int(code_size)

    # --- grid facts --------------------------------------------------------------------
    @property
    def box_size(self) -> int:
        """Columns of a decoded box: 9 with velocity, 7 without."""
        return self.code_size - 1

    @property
    def cell_size(self) -> tuple[float, float]:
        """Metres per BEV map cell along x and y."""
        return (self.voxel_size[0] * self.out_size_factor,
                self.voxel_size[1] * self.out_size_factor)

    @property
    def span(self) -> tuple[float, float]:
        """Metres covered by the map along x and y."""
        return (self.pc_range[3] - self.pc_range[0], self.pc_range[4] - self.pc_range[1])

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(H, W) of the BEV map this coder expects (rows along y, columns along x)."""
        return (int(round(self.span[1] / self.cell_size[1])),
                int(round(self.span[0] / self.cell_size[0])))

    def metric_to_grid(self, xy: Tensor) -> Tensor:
        """(..., 2) metres -> (..., 2) grid coordinates (column, row) = (x, y) in cells."""
        lo = xy.new_tensor(self.pc_range[:2])
        return (xy - lo) / xy.new_tensor(self.cell_size)

    def grid_to_metric(self, grid: Tensor) -> Tensor:
        """(..., 2) grid coordinates -> (..., 2) metres."""
        return grid * grid.new_tensor(self.cell_size) + grid.new_tensor(self.pc_range[:2])

    # --- coding ------------------------------------------------------------------------
    def encode(self, boxes: Tensor) -> Tensor:
        """Regression targets of boxes.

        Args:
            boxes: (N, 9) ``(x, y, z, l, w, h, yaw, vx, vy)``, geometric centre; (N, 7+) when
                ``code_size == 8``.

        Returns:
            (N, code_size) targets (layout in the module docstring).
        """
        if boxes.dim() != 2 or boxes.shape[-1] < self.box_size:
            raise ValueError(f"encode expects (N, {self.box_size}+) boxes, got "
                             f"{tuple(boxes.shape)}")
        b = boxes.float() if not boxes.is_floating_point() else boxes
        parts = [self.metric_to_grid(b[:, 0:2]), b[:, 2:3],
                 b[:, 3:6].clamp_min(_MIN_SIZE).log(),
                 torch.sin(b[:, 6:7]), torch.cos(b[:, 6:7])]
        if self.code_size == 10:
            parts.append(b[:, 7:9])
        return torch.cat(parts, dim=-1)

    def decode_boxes(self, codes: Tensor) -> Tensor:
        """Boxes from codes, no filtering (differentiable; used for matching and losses).

        Args:
            codes: (..., code_size).

        Returns:
            (..., box_size) boxes ``(x, y, z, l, w, h, yaw[, vx, vy])``, geometric centre.
        """
        if codes.shape[-1] != self.code_size:
            raise ValueError(f"codes must have {self.code_size} values, got {codes.shape[-1]}")
        parts = [self.grid_to_metric(codes[..., 0:2]), codes[..., 2:3], codes[..., 3:6].exp(),
                 torch.atan2(codes[..., 6:7], codes[..., 7:8])]
        if self.code_size == 10:
            parts.append(codes[..., 8:10])
        return torch.cat(parts, dim=-1)

    def decode(self, scores: Tensor, codes: Tensor, filter: bool = True) -> list[dict]:
        """Detections from per-query class scores and codes (TransFusion's ``decode``).

        Each query becomes one box with its best class; no NMS (TransFusion's queries
        are already one per object).

        Args:
            scores: (B, Q, K) class scores in [0, 1].
            codes: (B, Q, code_size).
            filter: drop boxes at or under ``score_threshold`` and outside
                ``post_center_range``.

        Returns:
            per sample ``{'bboxes': (N, box_size), 'scores': (N,), 'labels': (N,) long}``.
        """
        if scores.dim() != 3 or codes.shape[:2] != scores.shape[:2]:
            raise ValueError(f"scores (B, Q, K) and codes (B, Q, {self.code_size}) must agree, "
                             f"got {tuple(scores.shape)} and {tuple(codes.shape)}")
        best_scores, labels = scores.max(dim=-1)
        boxes = self.decode_boxes(codes)
        results = []
        for s in range(scores.shape[0]):
            keep = torch.ones_like(best_scores[s], dtype=torch.bool)
            if filter:
                keep &= best_scores[s] > self.score_threshold
                if self.post_center_range is not None:
                    lo = boxes.new_tensor(self.post_center_range[:3])
                    hi = boxes.new_tensor(self.post_center_range[3:])
                    centre = boxes[s, :, 0:3]
                    keep &= ((centre >= lo) & (centre <= hi)).all(dim=-1)
            results.append(dict(bboxes=boxes[s][keep], scores=best_scores[s][keep],
                                labels=labels[s][keep]))
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(pc_range={self.pc_range}, voxel_size={self.voxel_size}, "
                f"out_size_factor={self.out_size_factor}, code_size={self.code_size})")
