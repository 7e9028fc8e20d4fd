"""RoIAlign-style sampling of a map inside each decoder query's (rotated) footprint.

A footprint (:class:`~interlace.core.interaction.correspondence.Footprint`) is a rotated
rectangle on stream A's map. Its ``grid_size x grid_size`` sample points are the bin
centres of an even grid over the rectangle (one bilinear sample per RoIAlign bin), read
with :func:`torch.nn.functional.grid_sample` (``align_corners=False``), so the whole
operation is differentiable w.r.t. the map and runs on CPU and GPU alike.

Conventions (shared with :mod:`interlace.core.interaction.streams`):

- positions are normalised (x, y) in [0, 1] over the whole map: 0 is the left/top edge,
  1 the right/bottom edge, cell (i, j) has its centre at ((j + 0.5) / W, (i + 0.5) / H);
- ``size[..., 0]`` is the extent along the heading, ``size[..., 1]`` across it;
- ``yaw`` turns the heading from +x (the column axis) towards +y (the row axis): the
  heading direction is (cos yaw, sin yaw) in (x, y). On a BEV map whose rows follow the
  ego +y axis this is the usual counter-clockwise yaw.
- the rotation is done in normalised units, which equals a metric rotation when the map
  covers a square extent (BEV grids); on non-square maps use yaw = 0.

Sample order: row-major over the footprint's local grid, the across-axis index first
(``s = r * grid_size + c``, c along the heading), so a yaw-0 footprint's samples come in
the map's own row-major order.
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .correspondence import Footprint

__all__ = ["footprint_grid", "sample_footprint_on_map", "square_footprint", "scale_footprint"]


def _bin_centres(grid_size: int, like: Tensor) -> Tensor:
    """(G,) offsets in [-0.5, 0.5] of the G bin centres across a unit extent."""
    return (torch.arange(grid_size, device=like.device, dtype=like.dtype) + 0.5) / grid_size - 0.5


def footprint_grid(footprint: Footprint, grid_size: int = 7, enlarge: float = 1.0) -> Tensor:
    """Normalised (x, y) of the grid_size x grid_size sample points of every footprint.

    Args:
        footprint: centres (B, Q, 2), sizes (B, Q, 2), yaws (B, Q).
        grid_size: G, bins per side.
        enlarge: scale factor on the footprint size (DeepInteraction samples the BEV with
            the box enlarged 2x so the query also sees its surroundings).

    Returns:
        (B, Q, G * G, 2) points, order as in the module docstring.
    """
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1, got {grid_size}")
    center, size, yaw = footprint.center, footprint.size, footprint.yaw
    offsets = _bin_centres(grid_size, center)
    across, along = torch.meshgrid(offsets, offsets, indexing="ij")  # (G, G): row = across
    local_along = along.reshape(1, 1, -1) * (size[..., 0:1] * enlarge)  # (B, Q, S)
    local_across = across.reshape(1, 1, -1) * (size[..., 1:2] * enlarge)
    cos, sin = torch.cos(yaw).unsqueeze(-1), torch.sin(yaw).unsqueeze(-1)
    x = center[..., 0:1] + local_along * cos - local_across * sin
    y = center[..., 1:2] + local_along * sin + local_across * cos
    return torch.stack([x, y], dim=-1)


def sample_points_on_map(feature_map: Tensor, points: Tensor) -> Tensor:
    """Bilinear samples of `feature_map` (B, C, H, W) at normalised `points` (B, Q, S, 2):
    (B, Q, S, C); points outside the map read zeros."""
    if points.shape[0] != feature_map.shape[0]:
        raise ValueError(f"points are for {points.shape[0]} maps, feature_map has "
                         f"{feature_map.shape[0]}")
    grid = points.to(feature_map.dtype) * 2.0 - 1.0  # grid_sample wants [-1, 1]
    sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # (B, C, Q, S)
    return sampled.permute(0, 2, 3, 1)


def sample_footprint_on_map(feature_map: Tensor, footprint: Footprint, grid_size: int = 7,
                            enlarge: float = 1.0) -> Tensor:
    """RoIAlign-style features inside each footprint.

    Args:
        feature_map: (B, C, H, W) one map per sample (stream A's first level, V = 1).
        footprint: per-query rectangles on that map (B, Q).
        grid_size: G, samples per side (7 as in DeepInteraction).
        enlarge: footprint scale factor.

    Returns:
        (B, Q, G * G, C) samples.
    """
    return sample_points_on_map(feature_map, footprint_grid(footprint, grid_size, enlarge))


def square_footprint(positions: Tensor, size: Union[float, Tensor] = 0.05) -> Footprint:
    """An axis-aligned square of side `size` (normalised) around each position (B, Q, 2):
    the decoder's footprint when the domain gives no box (or before any box exists)."""
    side = torch.as_tensor(size, dtype=positions.dtype, device=positions.device)
    return Footprint(center=positions, size=side.expand(positions.shape).clone(),
                     yaw=positions.new_zeros(positions.shape[:-1]))


def scale_footprint(footprint: Footprint, factor: float) -> Footprint:
    """A copy with the planar size scaled by `factor` (centre, yaw, z, height kept)."""
    if factor == 1.0:
        return footprint
    return Footprint(center=footprint.center, size=footprint.size * factor, yaw=footprint.yaw,
                     z=footprint.z, height=footprint.height)
