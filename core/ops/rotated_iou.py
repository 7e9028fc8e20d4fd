"""Exact IoU of rotated boxes (BEV and 3D) in pure PyTorch, differentiable.

Box convention: see :mod:`interlace.core.ops.box_geometry` -- 3D boxes are
``(x, y, z, l, w, h, yaw, ...)`` with a geometric centre, BEV boxes ``(x, y, l, w, yaw)``.

The intersection of two rectangles is a convex polygon whose vertices are among: the
corners of A inside B, the corners of B inside A, and the crossings of A's edges with B's
edges. All 24 candidates are computed for every pair at once with a validity mask, the
valid ones are sorted by angle around their mean and the area follows from the shoelace
formula. Sorting only picks an order (no gradient), so the area stays differentiable with
respect to the box parameters through the vertex positions.

Everything is computed in box A's frame: A becomes axis-aligned at the origin, which makes
three of the four tests simple range checks and, for float32 boxes 50 m from the ego,
avoids losing precision to large absolute coordinates.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .box_geometry import _check_3d, to_bev, unit_square

__all__ = [
    "bev_intersection_aligned",
    "bev_iou_rotated",
    "bev_iou_rotated_aligned",
    "iou_3d",
    "iou_3d_aligned",
]

# Pairs per chunk for the (K, 24, 2) candidate tensors: a few tens of MB per chunk.
_PAIRS_PER_CHUNK = 1 << 16
# Rows x columns per block of the pairwise prefilter mask.
_PAIRWISE_BLOCK = 1 << 22


def _rotate(x: Tensor, y: Tensor, c: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    return x * c - y * s, x * s + y * c


def _intersection_area(a: Tensor, b: Tensor) -> Tensor:
    """Intersection area of aligned BEV box pairs ``(K, 5)``, ``(K, 5)`` -> ``(K,)``."""
    dtype = a.dtype
    la, wa, lb, wb = a[:, 2], a[:, 3], b[:, 2], b[:, 3]
    ca, sa = torch.cos(a[:, 4]), torch.sin(a[:, 4])
    # B's centre and heading in A's frame.
    bx, by = _rotate(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1], ca, -sa)
    dyaw = b[:, 4] - a[:, 4]
    cd, sd = torch.cos(dyaw), torch.sin(dyaw)

    # Tolerance scaled to the box size so boundary cases (shared edges, touching corners)
    # are decided the same way in float32 and float64; the area error it allows is
    # O(tol * perimeter), far below what IoU users care about.
    scale = torch.stack([la, wa, lb, wb], dim=1).detach().abs().amax(dim=1).clamp_min(1.0)
    tol = (64 * torch.finfo(dtype).eps) * scale                      # (K,)
    tol_c = tol[:, None]
    ha, hwa = 0.5 * la[:, None], 0.5 * wa[:, None]                  # (K, 1)
    hb, hwb = 0.5 * lb[:, None], 0.5 * wb[:, None]

    unit = unit_square(a)                                            # (4, 2)
    corners_a = unit * torch.stack([la, wa], dim=1)[:, None, :]     # (K, 4, 2)
    lbx, lby = unit[:, 0] * lb[:, None], unit[:, 1] * wb[:, None]   # B corners, B frame
    rbx, rby = _rotate(lbx, lby, cd[:, None], sd[:, None])
    corners_b = torch.stack([rbx + bx[:, None], rby + by[:, None]], dim=-1)

    # A's corners expressed in B's frame for the inside-B test.
    qx, qy = _rotate(corners_a[..., 0] - bx[:, None], corners_a[..., 1] - by[:, None],
                     cd[:, None], -sd[:, None])
    a_in_b = (qx.abs() <= hb + tol_c) & (qy.abs() <= hwb + tol_c)
    b_in_a = (corners_b[..., 0].abs() <= ha + tol_c) & (corners_b[..., 1].abs() <= hwa + tol_c)

    # Crossings of B's edges p -> q with A's edge lines x = +-l/2 and y = +-w/2.
    p = corners_b                                                    # (K, 4, 2)
    q = torch.roll(corners_b, shifts=-1, dims=1)
    e = q - p
    t_tol = 64 * torch.finfo(dtype).eps
    sign = torch.tensor([1.0, -1.0], dtype=dtype, device=a.device)  # both parallel lines

    def crossings(axis: int, half_along: Tensor, half_across: Tensor) -> tuple[Tensor, Tensor]:
        other = 1 - axis
        line = (half_along[:, :, None] * sign)                       # (K, 1, 2)
        ea = e[..., axis, None]                                      # (K, 4, 1)
        # Near-parallel edges are skipped: any crossing they have lies within tol of one of
        # their endpoints, which the corner tests already cover. Substituting 1 for the
        # denominator keeps the discarded branch finite so its zero gradient stays zero.
        ok = ea.abs() > tol[:, None, None]
        t = (line - p[..., axis, None]) / torch.where(ok, ea, torch.ones_like(ea))
        v = p[..., other, None] + t * e[..., other, None]            # (K, 4, 2)
        valid = (ok & (t >= -t_tol) & (t <= 1 + t_tol)
                 & (v.abs() <= half_across[:, :, None] + tol[:, None, None]))
        line = line.expand_as(v)
        pts = torch.stack([line, v] if axis == 0 else [v, line], dim=-1)
        return pts.reshape(-1, 8, 2), valid.reshape(-1, 8)

    x_pts, x_valid = crossings(0, ha, hwa)
    y_pts, y_valid = crossings(1, hwa, ha)

    pts = torch.cat([corners_a, corners_b, x_pts, y_pts], dim=1)     # (K, 24, 2)
    valid = torch.cat([a_in_b, b_in_a, x_valid, y_valid], dim=1)     # (K, 24)
    pts = torch.where(valid[..., None], pts, torch.zeros_like(pts))

    with torch.no_grad():
        count = valid.sum(dim=1, keepdim=True).clamp_min(1)
        centre = pts.sum(dim=1, keepdim=True) / count[..., None]
        rel = pts - centre
        angle = torch.atan2(rel[..., 1], rel[..., 0])
        # Invalid candidates go to the end of the order.
        angle = torch.where(valid, angle, torch.full_like(angle, 10.0))
        order = angle.argsort(dim=1)
        valid_sorted = valid.gather(1, order)
    pts = pts.gather(1, order[..., None].expand(-1, -1, 2))
    # Padding slots repeat the first vertex: their shoelace terms vanish and the wrap-around
    # term closes the polygon back to vertex 0.
    pts = torch.where(valid_sorted[..., None], pts, pts[:, :1])
    nxt = torch.roll(pts, shifts=-1, dims=1)
    cross = pts[..., 0] * nxt[..., 1] - pts[..., 1] * nxt[..., 0]
    area = 0.5 * cross.sum(dim=1)
    # Ascending angle is counter-clockwise, so area >= 0 up to rounding; the minimum keeps
    # tolerance-admitted vertices from pushing IoU above 1.
    limit = torch.minimum((la * wa).abs(), (lb * wb).abs())
    return torch.minimum(area.clamp_min(0.0), limit)


def bev_intersection_aligned(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Intersection area of box pairs in BEV.

    Args:
        boxes_a: ``(N, 5)`` BEV ``(x, y, l, w, yaw)`` or ``(N, 7+)`` 3D boxes.
        boxes_b: ``(N, 5)`` or ``(N, 7+)``, paired row by row with ``boxes_a``.

    Returns:
        ``(N,)`` intersection areas (m^2), differentiable.
    """
    a, b = to_bev(boxes_a, "boxes_a"), to_bev(boxes_b, "boxes_b")
    if a.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"aligned boxes must be (N, C) with equal N, got "
                         f"{tuple(boxes_a.shape)} and {tuple(boxes_b.shape)}")
    b = b.to(a.dtype)
    if a.shape[0] == 0:
        return a.new_zeros(0)
    chunks = [_intersection_area(a[i:i + _PAIRS_PER_CHUNK], b[i:i + _PAIRS_PER_CHUNK])
              for i in range(0, a.shape[0], _PAIRS_PER_CHUNK)]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def _pairwise_intersection(a: Tensor, b: Tensor, z_overlap: Tensor | None = None) -> Tensor:
    """``(N, M)`` BEV intersection areas, computing only pairs whose circumcircles meet."""
    N, M = a.shape[0], b.shape[0]
    if N == 0 or M == 0:
        return a.new_zeros(N, M)
    with torch.no_grad():
        # Most pairs in a scene are far apart; the circumcircle test is exact for "no
        # overlap" and lets the polygon clipping run on a small subset.
        ra = 0.5 * torch.sqrt(a[:, 2] ** 2 + a[:, 3] ** 2)
        rb = 0.5 * torch.sqrt(b[:, 2] ** 2 + b[:, 3] ** 2)
    rows = max(1, _PAIRWISE_BLOCK // M)
    out = []
    for i in range(0, N, rows):
        ab = a[i:i + rows]
        with torch.no_grad():
            d2 = (ab[:, None, 0] - b[None, :, 0]) ** 2 + (ab[:, None, 1] - b[None, :, 1]) ** 2
            reach = (ra[i:i + rows, None] + rb[None, :]) * (1 + 1e-6)
            near = (d2 <= reach ** 2) & (reach > 0)
            if z_overlap is not None:
                near &= z_overlap[i:i + rows] > 0
            ia, ib = near.nonzero(as_tuple=True)
        vals = bev_intersection_aligned(ab[ia], b[ib])
        flat = a.new_zeros(ab.shape[0] * M)
        out.append(flat.index_put((ia * M + ib,), vals).view(ab.shape[0], M))
    return out[0] if len(out) == 1 else torch.cat(out)


def _safe_ratio(inter: Tensor, union: Tensor) -> Tensor:
    # Two zero-size boxes have union 0: IoU is defined as 0 there, without a NaN gradient.
    ok = union > 0
    iou = inter / torch.where(ok, union, torch.ones_like(union))
    return torch.where(ok, iou, torch.zeros_like(iou)).clamp(0.0, 1.0)


def bev_iou_rotated(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise IoU of rotated boxes in bird's-eye view.

    Args:
        boxes_a: ``(N, 5)`` BEV ``(x, y, l, w, yaw)`` or ``(N, 7+)`` 3D boxes.
        boxes_b: ``(M, 5)`` or ``(M, 7+)``.

    Returns:
        ``(N, M)`` IoU in [0, 1]; 0 where both boxes have zero area. Memory is bounded by
        chunking, so N x M in the millions is fine.
    """
    a, b = to_bev(boxes_a, "boxes_a"), to_bev(boxes_b, "boxes_b")
    b = b.to(a.dtype)
    inter = _pairwise_intersection(a, b)
    union = (a[:, 2] * a[:, 3]).abs()[:, None] + (b[:, 2] * b[:, 3]).abs()[None, :] - inter
    return _safe_ratio(inter, union)


def bev_iou_rotated_aligned(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of box pairs in BEV: ``(N, 5|7+)``, ``(N, 5|7+)`` -> ``(N,)``, differentiable.

    Equal to the diagonal of :func:`bev_iou_rotated` without computing the N x N matrix.
    """
    a, b = to_bev(boxes_a, "boxes_a"), to_bev(boxes_b, "boxes_b")
    inter = bev_intersection_aligned(a, b)
    union = (a[:, 2] * a[:, 3]).abs() + (b[:, 2] * b[:, 3]).abs().to(a.dtype) - inter
    return _safe_ratio(inter, union)


def _z_overlap(a: Tensor, b: Tensor) -> Tensor:
    top = torch.minimum(a[..., 2] + 0.5 * a[..., 5], b[..., 2] + 0.5 * b[..., 5])
    bottom = torch.maximum(a[..., 2] - 0.5 * a[..., 5], b[..., 2] - 0.5 * b[..., 5])
    return (top - bottom).clamp_min(0.0)


def _volume(b: Tensor) -> Tensor:
    return (b[..., 3] * b[..., 4] * b[..., 5]).abs()


def iou_3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise 3D IoU of yaw-rotated boxes.

    Args:
        boxes_a: ``(N, 7+)`` boxes ``(x, y, z, l, w, h, yaw, ...)``, geometric centre.
        boxes_b: ``(M, 7+)``.

    Returns:
        ``(N, M)``: BEV intersection x vertical overlap / (vol_a + vol_b - intersection).
    """
    a, b = _check_3d(boxes_a, "boxes_a"), _check_3d(boxes_b, "boxes_b")
    b = b.to(a.dtype)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError("iou_3d expects (N, 7+) and (M, 7+) boxes")
    dz = _z_overlap(a[:, None, :], b[None, :, :])                    # (N, M)
    inter = _pairwise_intersection(to_bev(a), to_bev(b), z_overlap=dz.detach()) * dz
    union = _volume(a)[:, None] + _volume(b)[None, :] - inter
    return _safe_ratio(inter, union)


def iou_3d_aligned(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """3D IoU of box pairs: ``(N, 7+)``, ``(N, 7+)`` -> ``(N,)``, differentiable (IoU losses)."""
    a, b = _check_3d(boxes_a, "boxes_a"), _check_3d(boxes_b, "boxes_b")
    b = b.to(a.dtype)
    inter = bev_intersection_aligned(a, b) * _z_overlap(a, b)
    union = _volume(a) + _volume(b) - inter
    return _safe_ratio(inter, union)
