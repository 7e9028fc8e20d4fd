"""Dense class-heatmap targets: a Gaussian peak per GT box centre on its class channel
(CenterNet, Zhou et al. 2019; used by TransFusion Sec. 3.2 to supervise the heatmap that
initialises the queries).

The radius follows CenterNet / CornerNet's ``gaussian_radius`` *as mmdet3d implements
it* (the three quadratic roots with ``(b + sqrt(b^2 - 4ac)) / 2``, whose missing ``/ a``
makes radii larger than CornerNet's; TransFusion's heatmaps were trained with these),
with TransFusion's ``min_overlap = 0.1`` and a minimum radius of 2 cells. The Gaussian has
sigma = diameter / 6 and overlapping peaks of one class keep their maximum.

Map convention: ``heatmap[k, i, j]`` is row i (y) and column j (x), as the head's BEV map.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["gaussian_radius", "gaussian_kernel", "draw_gaussian", "class_heatmap_targets"]


def gaussian_radius(height: float, width: float, min_overlap: float = 0.1) -> float:
    """Radius (in cells) within which a shifted box keeps at least ``min_overlap`` IoU
    with a (height x width)-cell box, smallest of CornerNet's three cases."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(max(b1 ** 2 - 4 * c1, 0.0))) / 2

    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(max(b2 ** 2 - 16 * c2, 0.0))) / 2

    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(max(b3 ** 2 - 4 * a3 * c3, 0.0))) / 2
    return min(r1, r2, r3)


def gaussian_kernel(radius: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """(2r + 1, 2r + 1) unnormalised Gaussian, 1 at the centre, sigma = (2r + 1) / 6;
    values under machine epsilon x max are set to 0 (as CenterNet)."""
    diameter = 2 * radius + 1
    sigma = diameter / 6.0
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma * sigma))
    kernel[kernel < torch.finfo(dtype).eps * kernel.max()] = 0
    return kernel


def draw_gaussian(heatmap: Tensor, center: Sequence[int], radius: int) -> Tensor:
    """Splat a Gaussian peak into one class channel, in place (element-wise max).

    Args:
        heatmap: (H, W) channel.
        center: integer (x, y) = (column, row) of the peak.
        radius: Gaussian radius in cells.

    Returns:
        `heatmap` (modified in place).
    """
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape
    if not (0 <= x < width and 0 <= y < height):
        return heatmap
    kernel = gaussian_kernel(radius, heatmap.dtype, heatmap.device)
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    window = heatmap[y - top:y + bottom, x - left:x + right]
    patch = kernel[radius - top:radius + bottom, radius - left:radius + right]
    torch.maximum(window, patch, out=window)
    return heatmap


def class_heatmap_targets(boxes: Tensor, labels: Tensor, num_classes: int,
                          grid_shape: Sequence[int], pc_range_xy: Sequence[float],
                          cell_size: Sequence[float], min_overlap: float = 0.1,
                          min_radius: int = 2) -> Tensor:
    """Gaussian heatmap targets of one sample.

    Args:
        boxes: (N, 7+) GT boxes ``(x, y, z, l, w, h, yaw, ...)`` in metres.
        labels: (N,) long class indices (others are skipped).
        num_classes: K.
        grid_shape: (H, W) of the BEV map.
        pc_range_xy: (x0, y0) metres at the map's lower corner.
        cell_size: (sx, sy) metres per cell.
        min_overlap: of :func:`gaussian_radius` (TransFusion: 0.1).
        min_radius: smallest radius in cells (TransFusion: 2).

    Returns:
        (K, H, W) targets in [0, 1], 1 exactly at each box's centre cell.
    """
    h, w = int(grid_shape[0]), int(grid_shape[1])
    heatmap = boxes.new_zeros((num_classes, h, w), dtype=torch.float32)
    sx, sy = float(cell_size[0]), float(cell_size[1])
    x0, y0 = float(pc_range_xy[0]), float(pc_range_xy[1])
    for box, label in zip(boxes.detach().cpu().tolist(), labels.detach().cpu().tolist()):
        label = int(label)
        length_cells, width_cells = box[3] / sx, box[4] / sy
        if not 0 <= label < num_classes or length_cells <= 0 or width_cells <= 0:
            continue
        radius = max(int(min_radius), int(gaussian_radius(width_cells, length_cells, min_overlap)))
        gx, gy = (box[0] - x0) / sx, (box[1] - y0) / sy
        if not (0 <= gx < w and 0 <= gy < h):
            continue
        # The integer cell holding the centre (floor; gx, gy >= 0 here).
        draw_gaussian(heatmap[label], (int(gx), int(gy)), radius)
    return heatmap
