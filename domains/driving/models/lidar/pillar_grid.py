"""The coarse pillar grid of DeepInteraction++'s image-to-LiDAR sampling: the raw points
of each 0.6 m x 0.6 m BEV cell, at most 20 per cell (docs/methods/deepinteraction.md,
"LiDAR stream").

Its output is the ``pillar_points`` argument of
:class:`interlace.core.interaction.ProjectionCorrespondence`: per sample a (K_b, C)
tensor of points in the current LiDAR frame. The cells are assigned exactly as the
correspondence assigns them (same normalised coordinates, same
:func:`~interlace.core.interaction.projection_geometry.group_points_by_cell`), so with
the correspondence's ``bev_range`` = this grid's x/y range and a first BEV level of
:attr:`PillarPointGrid.grid_shape` (180 x 180 at the paper's settings), every kept point
is used there and no cell is cut a second time.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.interaction.projection_geometry import group_points_by_cell

__all__ = ["PillarPointGrid"]


@MODELS.register_module()
class PillarPointGrid(nn.Module):
    """Keep the first ``max_points_per_pillar`` points of every BEV pillar.

    Args:
        point_cloud_range: ``[x0, y0, z0, x1, y1, z1]`` metres; points outside are dropped
            (the same range as the voxelisation).
        pillar_size: (sx, sy) metres; the range must hold a whole number of pillars.
        max_points_per_pillar: cap per pillar, the first points in input order (20).
    """

    def __init__(self, point_cloud_range: Sequence[float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
                 pillar_size: Sequence[float] = (0.6, 0.6),
                 max_points_per_pillar: int = 20) -> None:
        super().__init__()
        if len(point_cloud_range) != 6 or len(pillar_size) != 2:
            raise ValueError(f"point_cloud_range needs 6 values and pillar_size 2, got "
                             f"{point_cloud_range} and {pillar_size}")
        if max_points_per_pillar <= 0:
            raise ValueError(f"max_points_per_pillar must be positive, got {max_points_per_pillar}")
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        self.pillar_size = tuple(float(v) for v in pillar_size)
        self.max_points_per_pillar = int(max_points_per_pillar)
        x0, y0, _, x1, y1, _ = self.point_cloud_range
        cells = []
        for span, size in ((x1 - x0, self.pillar_size[0]), (y1 - y0, self.pillar_size[1])):
            n = round(span / size)
            # The correspondence spreads the range evenly over the map's cells, so a
            # partial last pillar would silently make every pillar a little larger.
            if n <= 0 or abs(n * size - span) > 1e-6 * max(1.0, span):
                raise ValueError(f"range {span} m is not a whole number of {size} m pillars")
            cells.append(n)
        self.grid_shape = (cells[1], cells[0])  # (H, W): rows follow y, columns x

    @property
    def bev_range(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the ``bev_range`` to give ProjectionCorrespondence."""
        x0, y0, _, x1, y1, _ = self.point_cloud_range
        return (x0, y0, x1, y1)

    def group(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Pillar points of one sample and their pillars.

        Args:
            points: (P, C) float, columns x, y, z first.

        Returns:
            kept (K, C) points, ordered by pillar and, inside a pillar, by input order;
            cell (K,) long row-major pillar index ``row * W + col`` (row from y, col from x).
        """
        if points.dim() != 2 or points.shape[1] < 3:
            raise ValueError(f"points must be (P, C>=3), got {tuple(points.shape)}")
        x0, y0, z0, x1, y1, z1 = self.point_cloud_range
        xyz = points[:, :3].float()
        inside_z = torch.isfinite(xyz).all(dim=1) & (xyz[:, 2] >= z0) & (xyz[:, 2] < z1)
        candidates = inside_z.nonzero(as_tuple=True)[0]
        xy = xyz[candidates, :2]
        # The same float32 arithmetic as ProjectionCorrespondence.metric_to_bev, so a
        # point on a pillar border lands in the same pillar in both places.
        uv = (xy - xy.new_tensor([x0, y0])) / xy.new_tensor([x1 - x0, y1 - y0])
        height, width = self.grid_shape
        keep, cell = group_points_by_cell(uv, height, width, self.max_points_per_pillar)
        return points[candidates[keep]], cell

    def forward(self, points: Sequence[Tensor]) -> list[Tensor]:
        """Pillar points of a batch.

        Args:
            points: B tensors (P_b, C), x, y, z first, in the current (augmented) LiDAR
                frame; an empty (0, C) tensor for a sample without LiDAR.

        Returns:
            B tensors (K_b, C), at most ``max_points_per_pillar`` per pillar: the
            ``pillar_points`` of ProjectionCorrespondence.
        """
        return [self.group(p)[0] for p in points]

    def extra_repr(self) -> str:
        return (f"point_cloud_range={list(self.point_cloud_range)}, pillar_size="
                f"{list(self.pillar_size)}, max_points_per_pillar={self.max_points_per_pillar}, "
                f"grid_shape={self.grid_shape}")
