"""Rotated 3D / BEV box geometry in pure PyTorch (CPU and GPU, no compiled extension).

Box convention
--------------
A 3D box is a row ``(x, y, z, l, w, h, yaw, *extra)`` in a right-handed frame with z up:

* ``(x, y, z)`` is the **geometric centre** of the box (not the bottom centre);
* ``l`` is the extent along the box's heading axis, ``w`` across it, ``h`` vertically;
* ``yaw`` is the rotation about +z measured from the +x axis, counter-clockwise, in radians,
  so the heading axis is ``(cos yaw, sin yaw, 0)``.

This is nuScenes-devkit's ``Box(center, wlh=(w, l, h), orientation=yaw about z)`` with the
sizes reordered, and mmdet3d's ``LiDARInstance3DBoxes`` once their bottom-centre z is raised
by ``h / 2`` (see :func:`bottom_center_to_center`). Trailing columns (velocity, scores...)
are allowed everywhere and ignored by the geometric functions.

A BEV box is a row ``(x, y, l, w, yaw)``; functions that work in BEV accept either a 5-column
BEV box or a 3D box with at least 7 columns (6 columns is rejected as ambiguous).

Corner order (see :func:`box_corners_3d`): the bottom face counter-clockwise seen from
above, starting at local ``(+l/2, +w/2)``, i.e. local ``(+,+), (-,+), (-,-), (+,-)``, then
the top face in the same order. The BEV corners are the bottom face's four.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "bottom_center_to_center",
    "center_to_bottom_center",
    "box_corners_bev",
    "box_corners_3d",
    "points_in_boxes",
    "points_in_boxes_index",
]

# Keeps the (P_chunk, N) float temporaries of points_in_boxes around ~100 MB at most.
_POINTS_X_BOXES_PER_CHUNK = 1 << 22


def _as_float(t: Tensor) -> Tensor:
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _check_3d(boxes: Tensor, name: str = "boxes") -> Tensor:
    if boxes.dim() < 1 or boxes.shape[-1] < 7:
        raise ValueError(f"{name}: expected (..., 7+) 3D boxes (x, y, z, l, w, h, yaw), "
                         f"got shape {tuple(boxes.shape)}")
    return _as_float(boxes)


def to_bev(boxes: Tensor, name: str = "boxes") -> Tensor:
    """Return ``(..., 5)`` BEV boxes ``(x, y, l, w, yaw)`` from 5-column BEV or 7+-column 3D boxes."""
    if boxes.dim() < 1:
        raise ValueError(f"{name}: expected a (..., 5) or (..., 7+) tensor, got a scalar")
    c = boxes.shape[-1]
    if c == 5:
        return _as_float(boxes)
    if c >= 7:
        b = _as_float(boxes)
        return torch.cat([b[..., 0:2], b[..., 3:5], b[..., 6:7]], dim=-1)
    raise ValueError(f"{name}: expected 5 (x, y, l, w, yaw) or 7+ (x, y, z, l, w, h, yaw) "
                     f"columns, got shape {tuple(boxes.shape)}")


def bottom_center_to_center(boxes: Tensor) -> Tensor:
    """mmdet3d-style bottom-centre boxes ``(..., 7+)`` -> geometric-centre boxes (z += h/2).

    Returns a new tensor; extra columns are carried through unchanged.
    """
    b = _check_3d(boxes)
    return torch.cat([b[..., :2], b[..., 2:3] + 0.5 * b[..., 5:6], b[..., 3:]], dim=-1)


def center_to_bottom_center(boxes: Tensor) -> Tensor:
    """Geometric-centre boxes ``(..., 7+)`` -> mmdet3d-style bottom-centre boxes (z -= h/2)."""
    b = _check_3d(boxes)
    return torch.cat([b[..., :2], b[..., 2:3] - 0.5 * b[..., 5:6], b[..., 3:]], dim=-1)


def unit_square(like: Tensor) -> Tensor:
    """``(4, 2)`` corners of the unit square centred at 0, counter-clockwise from (+, +)."""
    return torch.tensor([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]],
                        dtype=like.dtype, device=like.device)


def box_corners_bev(boxes: Tensor) -> Tensor:
    """BEV corners of boxes.

    Args:
        boxes: ``(N, 5)`` BEV boxes ``(x, y, l, w, yaw)`` or ``(N, 7+)`` 3D boxes.

    Returns:
        ``(N, 4, 2)`` corners, counter-clockwise seen from above, starting at local
        ``(+l/2, +w/2)`` (front-left when yaw points forward).
    """
    bev = to_bev(boxes)
    local = unit_square(bev) * bev[..., None, 2:4]                  # (N, 4, 2)
    c, s = torch.cos(bev[..., 4:5]), torch.sin(bev[..., 4:5])        # (N, 1)
    x = local[..., 0] * c - local[..., 1] * s + bev[..., 0:1]
    y = local[..., 0] * s + local[..., 1] * c + bev[..., 1:2]
    return torch.stack([x, y], dim=-1)


def box_corners_3d(boxes: Tensor) -> Tensor:
    """3D corners of boxes.

    Args:
        boxes: ``(N, 7+)`` boxes ``(x, y, z, l, w, h, yaw, ...)``, geometric centre.

    Returns:
        ``(N, 8, 3)``: indices 0-3 are the bottom face (z - h/2) counter-clockwise from
        local ``(+l/2, +w/2)`` as in :func:`box_corners_bev`; 4-7 the top face (z + h/2)
        in the same order, so corner ``i + 4`` sits directly above corner ``i``.
    """
    b = _check_3d(boxes)
    bev = box_corners_bev(b)                                          # (N, 4, 2)
    z0 = (b[..., 2:3] - 0.5 * b[..., 5:6]).unsqueeze(-2).expand(*bev.shape[:-1], 1)
    z1 = (b[..., 2:3] + 0.5 * b[..., 5:6]).unsqueeze(-2).expand(*bev.shape[:-1], 1)
    bottom = torch.cat([bev, z0], dim=-1)
    top = torch.cat([bev, z1], dim=-1)
    return torch.cat([bottom, top], dim=-2)


def _points_in_boxes_block(points: Tensor, boxes: Tensor, eps: float) -> Tensor:
    d = points[:, None, :3] - boxes[None, :, :3]                      # (P, N, 3)
    c, s = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])             # (N,)
    # Rotate the offset into each box's frame so the test is an axis-aligned range check.
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    return ((lx.abs() <= 0.5 * boxes[:, 3] + eps)
            & (ly.abs() <= 0.5 * boxes[:, 4] + eps)
            & (d[..., 2].abs() <= 0.5 * boxes[:, 5] + eps))


@torch.no_grad()
def points_in_boxes(points: Tensor, boxes: Tensor, eps: float = 1e-5) -> Tensor:
    """Which boxes contain which points.

    Args:
        points: ``(P, 3+)`` points; only x, y, z are used (intensity etc. ignored).
        boxes: ``(N, 7+)`` boxes, geometric centre.
        eps: tolerance in metres; points on a face (up to ``eps`` outside) count as inside.

    Returns:
        ``(P, N)`` bool mask, ``mask[p, n]`` true when point ``p`` is in box ``n``.
    """
    b = _check_3d(boxes)
    pts = _as_float(points).to(b.dtype)
    if pts.dim() != 2 or pts.shape[-1] < 3:
        raise ValueError(f"points: expected (P, 3+), got shape {tuple(points.shape)}")
    if b.dim() != 2:
        raise ValueError(f"boxes: expected (N, 7+), got shape {tuple(boxes.shape)}")
    P, N = pts.shape[0], b.shape[0]
    if P == 0 or N == 0:
        return torch.zeros(P, N, dtype=torch.bool, device=pts.device)
    step = max(1, _POINTS_X_BOXES_PER_CHUNK // N)
    return torch.cat([_points_in_boxes_block(pts[i:i + step], b, eps)
                      for i in range(0, P, step)], dim=0)


@torch.no_grad()
def points_in_boxes_index(points: Tensor, boxes: Tensor, eps: float = 1e-5) -> Tensor:
    """Index of the first box containing each point.

    Args:
        points: ``(P, 3+)`` points.
        boxes: ``(N, 7+)`` boxes, geometric centre.
        eps: boundary tolerance as in :func:`points_in_boxes`.

    Returns:
        ``(P,)`` long: the lowest index ``n`` with point inside box ``n``, or -1 if none.
        ``(idx == n).sum()`` gives the number of points in box ``n`` when boxes do not
        overlap (nuScenes ``num_lidar_pts``, GT-paste collision checks).
    """
    mask = points_in_boxes(points, boxes, eps)
    if mask.shape[1] == 0:
        return torch.full((mask.shape[0],), -1, dtype=torch.long, device=mask.device)
    # argmax returns the first maximal index, i.e. the first containing box.
    first = mask.to(torch.uint8).argmax(dim=1)
    return torch.where(mask.any(dim=1), first, torch.full_like(first, -1))
