"""Camera geometry for :class:`~.projection_correspondence.ProjectionCorrespondence`:
projecting LiDAR points into augmented camera images and back, grouping points into BEV
pillars, and building a dense depth map from projected points.

Frames and matrices (mmdet3d / BEVFusion conventions):

- ``lidar2img`` (B, V, 4, 4): camera intrinsics (padded to 4 x 4) @ lidar->camera, for
  the *original* points and the *original* image pixels.
- ``bev_aug`` (B, 4, 4): the augmentation applied to the points
  (``current = bev_aug @ original``), so current points project with
  ``lidar2img @ inverse(bev_aug)``.
- ``img_aug`` (B, V, 3, 3): homogeneous 2D map original pixel -> network-input pixel
  (resize, crop, flip). A 4 x 4 matrix in the BEVFusion layout (2 x 2 part in
  ``[:2, :2]``, translation in ``[:2, 3]``) is accepted and converted.

Pixels are continuous coordinates in which pixel (i, j) covers [j, j + 1) x [i, i + 1),
so the normalised coordinate of pixel u is u / W (the ``streams`` convention).
Depth is the distance along the camera's optical (z) axis.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["image_aug_3x3", "project_points", "unproject_pixels", "group_points_by_cell",
           "sparse_depth_map", "densify_depth"]


def image_aug_3x3(img_aug: Tensor) -> Tensor:
    """Image augmentation as 3 x 3 homogeneous 2D matrices.

    Args:
        img_aug: (..., 3, 3), or (..., 4, 4) in the BEVFusion layout.

    Returns:
        (..., 3, 3).
    """
    if img_aug.shape[-2:] == (3, 3):
        return img_aug
    if img_aug.shape[-2:] != (4, 4):
        raise ValueError(f"img_aug must be (..., 3, 3) or (..., 4, 4), got {tuple(img_aug.shape)}")
    out = img_aug.new_zeros(*img_aug.shape[:-2], 3, 3)
    out[..., :2, :2] = img_aug[..., :2, :2]
    out[..., :2, 2] = img_aug[..., :2, 3]
    out[..., 2, 2] = 1.0
    return out


def _inverse(m: Tensor) -> Tensor:
    # float64 so that a project / unproject round trip stays within 1e-4 m at 60 m.
    return torch.linalg.inv(m.double()).to(m.dtype)


def project_points(points: Tensor, lidar2img: Tensor, image_shape: tuple[int, int],
                   img_aug: Optional[Tensor] = None, bev_aug: Optional[Tensor] = None,
                   eps: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """Project current-frame LiDAR points into every view's network-input image.

    Args:
        points: (B, P, 3+) points in the current (augmented) LiDAR frame; extra columns
            are ignored.
        lidar2img: (B, V, 4, 4) original points -> original image pixels.
        image_shape: (H_img, W_img) of the network input (after augmentation).
        img_aug: (B, V, 3, 3) or (B, V, 4, 4) original -> augmented pixels; identity if None.
        bev_aug: (B, 4, 4) original -> current points; identity if None.
        eps: minimum depth (metres) in front of the camera.

    Returns:
        pixels (B, V, P, 2) augmented-input pixels (u, v); depth (B, V, P) metres along
        the optical axis; valid (B, V, P) bool: depth > eps and inside the image.
    """
    pts = points[..., :3].to(lidar2img.dtype)
    homo = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1)    # (B, P, 4)
    mat = lidar2img
    if bev_aug is not None:
        mat = lidar2img @ _inverse(bev_aug.to(lidar2img.dtype)).unsqueeze(1)
    cam = torch.einsum("bvij,bpj->bvpi", mat, homo)                    # (B, V, P, 4)
    depth = cam[..., 2]
    # Points behind the camera get a clamped divisor: their pixels are meaningless but
    # finite, and `valid` drops them.
    uv = cam[..., :2] / depth.clamp(min=eps).unsqueeze(-1)
    if img_aug is not None:
        aug = image_aug_3x3(img_aug.to(uv.dtype))
        uvh = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)
        uvh = torch.einsum("bvij,bvpj->bvpi", aug, uvh)
        uv = uvh[..., :2] / uvh[..., 2:3]
    h, w = image_shape
    valid = ((depth > eps) & (uv[..., 0] >= 0) & (uv[..., 0] < w)
             & (uv[..., 1] >= 0) & (uv[..., 1] < h))
    return uv, depth, valid


def unproject_pixels(pixels: Tensor, depth: Tensor, lidar2img: Tensor,
                     img_aug: Optional[Tensor] = None,
                     bev_aug: Optional[Tensor] = None) -> Tensor:
    """Lift augmented-input pixels with a depth into the current LiDAR frame: the exact
    inverse of :func:`project_points`.

    Args:
        pixels: (B, V, P, 2) augmented-input pixels (u, v).
        depth: (B, V, P) depth along the optical axis, metres.
        lidar2img, img_aug, bev_aug: as in :func:`project_points` (lidar2img must be
            invertible, i.e. a full 4 x 4 with the intrinsics padded).

    Returns:
        (B, V, P, 3) points in the current LiDAR frame.
    """
    uv = pixels.to(lidar2img.dtype)
    if img_aug is not None:
        inv_aug = _inverse(image_aug_3x3(img_aug.to(uv.dtype)))
        uvh = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)
        uvh = torch.einsum("bvij,bvpj->bvpi", inv_aug, uvh)
        uv = uvh[..., :2] / uvh[..., 2:3]
    d = depth.to(uv.dtype).unsqueeze(-1)
    cam = torch.cat([uv * d, d, torch.ones_like(d)], dim=-1)           # (B, V, P, 4)
    mat = _inverse(lidar2img)
    if bev_aug is not None:
        mat = bev_aug.to(lidar2img.dtype).unsqueeze(1) @ mat
    pts = torch.einsum("bvij,bvpj->bvpi", mat, cam)
    return pts[..., :3] / pts[..., 3:4]


def group_points_by_cell(uv: Tensor, height: int, width: int,
                         max_per_cell: int) -> tuple[Tensor, Tensor]:
    """Assign points to the cells of a (height, width) map and keep at most
    `max_per_cell` per cell, the first ones in input order (the pillar grid).

    Args:
        uv: (P, 2) normalised (x, y) map coordinates of the points.
        height, width: map size.
        max_per_cell: cap on points per cell.

    Returns:
        keep (K,) long indices into the points; cell (K,) long row-major cell index
        (row * width + col). Points outside the map are dropped.
    """
    col = torch.floor(uv[:, 0] * width).long()
    row = torch.floor(uv[:, 1] * height).long()
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    idx = inside.nonzero(as_tuple=True)[0]
    cell = row[idx] * width + col[idx]
    # A stable sort keeps input order inside a cell, so "first" means first in the cloud.
    order = torch.argsort(cell, stable=True)
    cell, idx = cell[order], idx[order]
    counts = torch.bincount(cell, minlength=height * width)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(cell.numel(), device=cell.device) - first[cell]
    keep = rank < max_per_cell
    return idx[keep], cell[keep]


def sparse_depth_map(uv: Tensor, depth: Tensor, valid: Tensor, height: int,
                     width: int) -> Tensor:
    """Nearest depth of the projected points in each pixel of a (height, width) map.

    Args:
        uv: (V, P, 2) normalised pixel coordinates.
        depth: (V, P) depths.
        valid: (V, P) bool, which projections count.
        height, width: size of the depth map.

    Returns:
        (V, height, width) depth, 0 where no point landed.
    """
    v = uv.shape[0]
    col = torch.floor(uv[..., 0] * width).long().clamp(0, width - 1)
    row = torch.floor(uv[..., 1] * height).long().clamp(0, height - 1)
    view = torch.arange(v, device=uv.device).unsqueeze(1).expand_as(col)
    flat = (view * height + row) * width + col
    buf = torch.full((v * height * width,), float("inf"), dtype=depth.dtype, device=depth.device)
    # The nearest point wins: it is the surface the pixel sees.
    buf.scatter_reduce_(0, flat[valid], depth[valid], reduce="amin", include_self=True)
    buf = torch.where(torch.isinf(buf), torch.zeros_like(buf), buf)
    return buf.view(v, height, width)


def densify_depth(depth: Tensor, iterations: int = 3) -> Tensor:
    """Fill empty pixels of a sparse depth map from their neighbours.

    Each iteration gives every empty pixel the smallest (nearest) depth among its 3 x 3
    neighbours that have one (a min-pool restricted to empty pixels); filled pixels
    never change. After `iterations` rounds, pixels within `iterations` pixels
    (Chebyshev distance) of a measured one have a depth; the rest stay 0 (no depth).
    The minimum is taken rather than a mean so that foreground surfaces are not blurred
    into the background behind them.

    Args:
        depth: (N, H, W) depths, 0 = empty.
        iterations: number of fill rounds.

    Returns:
        (N, H, W) densified depth, 0 = still empty.
    """
    x = torch.where(depth > 0, depth, torch.full_like(depth, float("inf"))).unsqueeze(1)
    for _ in range(iterations):
        # max_pool2d pads with -inf, which the negation turns into +inf: borders never
        # contribute a fake depth.
        pooled = -F.max_pool2d(-x, kernel_size=3, stride=1, padding=1)
        x = torch.where(torch.isinf(x), pooled, x)
    x = x.squeeze(1)
    return torch.where(torch.isinf(x), torch.zeros_like(x), x)
