"""Rotated 3D / BEV box utilities: one import point for the geometry and IoU modules.

Box convention (documented in full in :mod:`interlace.core.ops.box_geometry`): a 3D box is
``(x, y, z, l, w, h, yaw, *extra)`` with ``(x, y, z)`` the geometric centre, ``l`` along the
heading, ``w`` across, ``h`` vertical, ``yaw`` counter-clockwise about +z from +x (radians);
a BEV box is ``(x, y, l, w, yaw)``. The code lives in two modules to keep each readable.
"""
from __future__ import annotations

from .box_geometry import (
    bottom_center_to_center,
    box_corners_3d,
    box_corners_bev,
    center_to_bottom_center,
    points_in_boxes,
    points_in_boxes_index,
)
from .rotated_iou import (
    bev_intersection_aligned,
    bev_iou_rotated,
    bev_iou_rotated_aligned,
    iou_3d,
    iou_3d_aligned,
)

__all__ = [
    "bottom_center_to_center",
    "center_to_bottom_center",
    "box_corners_bev",
    "box_corners_3d",
    "points_in_boxes",
    "points_in_boxes_index",
    "bev_intersection_aligned",
    "bev_iou_rotated",
    "bev_iou_rotated_aligned",
    "iou_3d",
    "iou_3d_aligned",
]
