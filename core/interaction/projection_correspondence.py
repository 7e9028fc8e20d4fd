"""Correspondence between a LiDAR BEV map (stream A) and V calibrated camera views
(stream B), as in DeepInteraction++: LiDAR points project into the images, pixels lift
back into the BEV with a depth.

Stream A: maps with ``num_views == 1`` whose levels all cover ``bev_range`` (map row i
<-> y, column j <-> x, normalised x = (x - x0) / (x1 - x0)). Stream B: maps with
``num_views == V`` whose levels all cover the padded network input (``pad_shape``).

Which queries get pairs:

- :meth:`gather_b_for_a` serves stream A's *first* level only, the pillar grid of the
  raw points; queries on coarser BEV levels get no pairs (they see the cameras through
  intra-modal attention across levels).
- Samples where either stream is absent (``present`` False) give no pairs, in every
  direction, and ``ray_layout`` marks them invalid.

Geometry helpers and the conventions for pixels, depth and the augmentation matrices
are in :mod:`.projection_geometry`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from interlace.core.engine.registry import TASK_UTILS

from .correspondence import Correspondence, Footprint, RayLayout
from .correspondence_utils import (assemble_gathered, both_present, inside_unit, require_maps,
                                   sample_maps)
from .projection_geometry import (group_points_by_cell, image_aug_3x3, project_points,
                                  densify_depth, sparse_depth_map, unproject_pixels)
from .streams import Gathered, StreamFeatures

__all__ = ["ProjectionCorrespondence"]


@TASK_UTILS.register_module()
class ProjectionCorrespondence(Correspondence):
    """BEV <-> calibrated camera views for one batch.

    Args:
        lidar2img: (B, V, 4, 4) intrinsics @ lidar->camera, original points -> original
            image pixels.
        image_shape: (H_img, W_img) of the network input after augmentation; projections
            outside it are invalid.
        bev_range: (x0, y0, x1, y1) metres covered by stream A's maps.
        img_aug: (B, V, 3, 3) or (B, V, 4, 4), original pixels -> network-input pixels;
            identity if None.
        bev_aug: (B, 4, 4), original points -> current points; identity if None.
        pillar_points: per sample a (P_b, 3+) tensor of raw points in the current LiDAR
            frame (for image-to-LiDAR sampling and for the depth map).
        max_points_per_pillar: points kept per BEV cell (the first ones), 20 as published.
        pixel_depth: (B, V, H_d, W_d) dense depth (metres, 0 = none) over the input image,
            usually at stream B's finest level; resampled (nearest) to each level. If None
            it is computed from ``pillar_points`` (see :meth:`pixel_depth_for`).
        ray_depths: (D,) depths (metres, along the optical axis) sampled along each image
            column by :meth:`ray_layout`; default 60 bins from 1 to 61 m.
        z_range: (z0, z1) metres; only used when ``pillar_points`` is None: each BEV cell
            then samples the images at ``pillar_heights`` virtual points between z0 and z1.
        pad_shape: (H_pad, W_pad) input pixels covered by stream B's maps (the padded batch
            shape); pixel u is normalised as u / W_pad. Defaults to ``image_shape``.
        densify_iterations: fill rounds of :func:`.projection_geometry.densify_depth`.
        pillar_heights: virtual points per cell when ``pillar_points`` is None.
        eps: minimum depth in front of a camera, metres.
    """

    def __init__(self, lidar2img: Tensor, image_shape: Sequence[int],
                 bev_range: Sequence[float], img_aug: Optional[Tensor] = None,
                 bev_aug: Optional[Tensor] = None,
                 pillar_points: Optional[Sequence[Tensor]] = None,
                 max_points_per_pillar: int = 20, pixel_depth: Optional[Tensor] = None,
                 ray_depths: Optional[Tensor] = None,
                 z_range: Optional[Sequence[float]] = None,
                 pad_shape: Optional[Sequence[int]] = None, densify_iterations: int = 3,
                 pillar_heights: int = 4, eps: float = 1e-5) -> None:
        self.lidar2img = torch.as_tensor(lidar2img, dtype=torch.float32)
        if self.lidar2img.dim() != 4 or self.lidar2img.shape[-2:] != (4, 4):
            raise ValueError(f"lidar2img must be (B, V, 4, 4), got {tuple(self.lidar2img.shape)}")
        b, v = self.lidar2img.shape[:2]
        dev = self.lidar2img.device
        self.batch_size, self.num_views = b, v
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.pad_shape = (tuple(int(s) for s in pad_shape) if pad_shape is not None
                          else self.image_shape)
        self.bev_range = tuple(float(x) for x in bev_range)
        if len(self.bev_range) != 4:
            raise ValueError(f"bev_range must be (x0, y0, x1, y1), got {bev_range}")
        eye3 = torch.eye(3, device=dev).expand(b, v, 3, 3)
        self.img_aug = (image_aug_3x3(torch.as_tensor(img_aug, dtype=torch.float32, device=dev))
                        if img_aug is not None else eye3.clone())
        self.bev_aug = (torch.as_tensor(bev_aug, dtype=torch.float32, device=dev)
                        if bev_aug is not None
                        else torch.eye(4, device=dev).expand(b, 4, 4).clone())
        if self.img_aug.shape[:2] != (b, v) or self.bev_aug.shape != (b, 4, 4):
            raise ValueError(f"img_aug must be (B={b}, V={v}, 3|4, 3|4) and bev_aug (B, 4, 4); "
                             f"got {tuple(self.img_aug.shape)} and {tuple(self.bev_aug.shape)}")
        if pillar_points is not None and len(pillar_points) != b:
            raise ValueError(f"pillar_points has {len(pillar_points)} samples, lidar2img {b}")
        self.pillar_points = pillar_points
        self.max_points_per_pillar = int(max_points_per_pillar)
        self.pixel_depth = pixel_depth
        self.ray_depths = (torch.as_tensor(ray_depths, dtype=torch.float32)
                           if ray_depths is not None else torch.linspace(1.0, 61.0, 60))
        self.max_depth = float(self.ray_depths.max())
        self.z_range = tuple(z_range) if z_range is not None else None
        self.densify_iterations = int(densify_iterations)
        self.pillar_heights = int(pillar_heights)
        self.eps = float(eps)
        self._depth_cache: dict[tuple[int, int], Tensor] = {}

    # --- geometry helpers --------------------------------------------------------------
    def project_points(self, points: Tensor, batch: slice = slice(None)
                       ) -> tuple[Tensor, Tensor, Tensor]:
        """Current-frame points (B', P, 3+) -> pixels (B', V, P, 2) in the augmented input,
        depth (B', V, P), valid (B', V, P) (depth > eps and inside the image). `batch`
        selects the samples whose matrices are used (all by default)."""
        dev = points.device
        return project_points(points, self.lidar2img[batch].to(dev), self.image_shape,
                              self.img_aug[batch].to(dev), self.bev_aug[batch].to(dev), self.eps)

    def unproject_pixels(self, pixels: Tensor, depth: Tensor,
                         batch: slice = slice(None)) -> Tensor:
        """Augmented-input pixels (B', V, P, 2) with depth (B', V, P) -> current-frame
        points (B', V, P, 3); the inverse of :meth:`project_points`."""
        dev = pixels.device
        return unproject_pixels(pixels, depth, self.lidar2img[batch].to(dev),
                                self.img_aug[batch].to(dev), self.bev_aug[batch].to(dev))

    def metric_to_bev(self, xy: Tensor) -> Tensor:
        """(..., 2) metres (x, y) -> (..., 2) normalised coordinates on stream A's map."""
        x0, y0, x1, y1 = self.bev_range
        lo, span = xy.new_tensor([x0, y0]), xy.new_tensor([x1 - x0, y1 - y0])
        return (xy - lo) / span

    def bev_to_metric(self, uv: Tensor) -> Tensor:
        """(..., 2) normalised coordinates on stream A's map -> (..., 2) metres."""
        x0, y0, x1, y1 = self.bev_range
        lo, span = uv.new_tensor([x0, y0]), uv.new_tensor([x1 - x0, y1 - y0])
        return uv * span + lo

    def _pad_wh(self, like: Tensor) -> Tensor:
        return like.new_tensor([self.pad_shape[1], self.pad_shape[0]])

    def _check(self, a: StreamFeatures, b: StreamFeatures) -> None:
        require_maps(a, "stream A (BEV)", num_views=1)
        require_maps(b, "stream B (cameras)", num_views=self.num_views)
        if a.batch_size != self.batch_size or b.batch_size != self.batch_size:
            raise ValueError(f"correspondence built for {self.batch_size} samples, streams "
                             f"have {a.batch_size} and {b.batch_size}")

    def _pillars(self, sample: int, height: int, width: int, device: torch.device
                 ) -> tuple[Tensor, Tensor]:
        """Points (K, 3) used to sample the images for BEV cells, and their cell (K,)."""
        if self.pillar_points is not None:
            pts = torch.as_tensor(self.pillar_points[sample], device=device)[:, :3].float()
            keep, cell = group_points_by_cell(self.metric_to_bev(pts[:, :2]), height, width,
                                              self.max_points_per_pillar)
            return pts[keep], cell
        if self.z_range is None:
            raise ValueError("ProjectionCorrespondence.gather_b_for_a needs pillar_points "
                             "(raw points per sample) or z_range (virtual pillars)")
        # No raw points: every cell samples the images at a few heights of its centre.
        ys = (torch.arange(height, device=device) + 0.5) / height
        xs = (torch.arange(width, device=device) + 0.5) / width
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        xy = self.bev_to_metric(torch.stack([gx, gy], -1).reshape(-1, 1, 2))
        zs = torch.linspace(self.z_range[0], self.z_range[1], self.pillar_heights, device=device)
        pts = torch.cat([xy.expand(-1, zs.numel(), 2),
                         zs.view(1, -1, 1).expand(xy.shape[0], -1, 1)], -1)
        cell = torch.arange(height * width, device=device).repeat_interleave(zs.numel())
        return pts.reshape(-1, 3), cell

    # --- correspondence ----------------------------------------------------------------
    def gather_b_for_a(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """Image features at the projections of each BEV cell's points (precise
        sampling-based alignment): one pair per (point, view that sees it), on stream B's
        finest level. Only stream A's first level gets pairs.

        Returns:
            :class:`Gathered`, values (P, C_b); key_position (P, 4) = (normalised u,
            normalised v, depth / max(ray_depths), view / V).
        """
        self._check(a, b)
        h_a, w_a = a.spatial_shapes[0]
        feats, v = b.levels[0], self.num_views
        present = both_present(a, b)
        pad = self._pad_wh(feats)
        values, index, pos = [], [], []
        for s in range(self.batch_size):
            if not bool(present[s]):
                continue
            pts, cell = self._pillars(s, h_a, w_a, feats.device)
            if pts.shape[0] == 0:
                continue
            pix, depth, valid = self.project_points(pts[None], slice(s, s + 1))
            uv = pix[0] / pad                                              # (V, K, 2)
            sampled = sample_maps(feats[s * v:(s + 1) * v], uv)           # (V, K, C)
            vi, ki = valid[0].nonzero(as_tuple=True)
            values.append(sampled[vi, ki])
            index.append(s * a.num_queries + cell[ki])
            pos.append(torch.stack([uv[vi, ki, 0], uv[vi, ki, 1], depth[0, vi, ki] / self.max_depth,
                                    vi.to(uv.dtype) / v], dim=-1))
        return assemble_gathered(values, index, pos, channels=b.channels,
                                 num_queries=a.num_queries, batch_size=self.batch_size,
                                 like=feats, position_dim=4)

    def pixel_depth_for(self, b: StreamFeatures) -> Tensor:
        """(B, V, H_d, W_d) depth per pixel, 0 where unknown.

        The given ``pixel_depth``, or one computed at stream B's finest level: every
        pillar point is projected into each view, each pixel keeps its nearest point's
        depth, and :func:`.projection_geometry.densify_depth` fills empty pixels from
        their 3 x 3 neighbours (nearest depth) for ``densify_iterations`` rounds.
        Cached per level shape.
        """
        if self.pixel_depth is not None:
            return torch.as_tensor(self.pixel_depth, device=b.device).float()
        h, w = b.spatial_shapes[0]
        if (h, w) in self._depth_cache:
            return self._depth_cache[(h, w)]
        if self.pillar_points is None:
            raise ValueError("ProjectionCorrespondence.gather_a_for_b needs pixel_depth or "
                             "pillar_points to lift pixels into the BEV")
        maps = []
        for s in range(self.batch_size):
            pts = torch.as_tensor(self.pillar_points[s], device=b.device)[:, :3].float()
            pix, depth, valid = self.project_points(pts[None], slice(s, s + 1))
            uv = pix[0] / self._pad_wh(pix)
            maps.append(sparse_depth_map(uv, depth[0], valid[0], h, w))
        dense = densify_depth(torch.cat(maps, 0), self.densify_iterations)
        self._depth_cache[(h, w)] = dense.view(self.batch_size, self.num_views, h, w)
        return self._depth_cache[(h, w)]

    def gather_a_for_b(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """BEV features at each image query's lifted position (LiDAR-to-image): every
        pixel centre of every level, with its depth (:meth:`pixel_depth_for` resampled
        to the level, nearest), is lifted into the current LiDAR frame and stream A's
        first level is sampled there. One pair per query with depth > 0 landing inside
        the BEV map.

        Returns:
            :class:`Gathered`, values (P, C_a); key_position (P, 2) = normalised BEV (x, y).
        """
        self._check(a, b)
        bsz, v = self.batch_size, self.num_views
        ref = b.reference_points()                                          # (S, 2)
        depth0 = self.pixel_depth_for(b).to(ref.dtype)
        # nearest-exact picks the source pixel whose centre is closest to the target centre.
        depth = torch.cat([F.interpolate(depth0, size=hw, mode="nearest-exact").flatten(2)
                           for hw in b.spatial_shapes], dim=-1)             # (B, V, S)
        pixels = (ref * self._pad_wh(ref)).expand(bsz, v, -1, 2)
        pts = self.unproject_pixels(pixels, depth)                         # (B, V, S, 3)
        uv = self.metric_to_bev(pts[..., :2])
        present = both_present(a, b).view(bsz, 1, 1)
        valid = (depth > 0) & inside_unit(uv) & present
        uv = uv.reshape(bsz, -1, 2)
        sampled = sample_maps(a.levels[0], uv)                              # (B, V*S, C)
        si, ni = valid.reshape(bsz, -1).nonzero(as_tuple=True)
        return Gathered(values=sampled[si, ni], query_index=si * b.num_queries + ni,
                        num_queries_per_sample=b.num_queries, batch_size=bsz,
                        key_position=uv[si, ni])

    def _footprint_points(self, fp: Footprint) -> Tensor:
        """(B, Q, 9, 3) metres: 4 bottom corners, 4 top corners, centre. The footprint
        is a rectangle in A's normalised coordinates; its corners are converted to metres
        (identical to a metric rectangle when the map's cells are square)."""
        c, s = torch.cos(fp.yaw), torch.sin(fp.yaw)
        half = fp.size / 2
        signs = fp.center.new_tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]])  # (4, 2)
        local = signs * half.unsqueeze(-2)                                   # (B, Q, 4, 2)
        rot_x = local[..., 0] * c.unsqueeze(-1) - local[..., 1] * s.unsqueeze(-1)
        rot_y = local[..., 0] * s.unsqueeze(-1) + local[..., 1] * c.unsqueeze(-1)
        corners = self.bev_to_metric(fp.center.unsqueeze(-2) + torch.stack([rot_x, rot_y], -1))
        z, hh = fp.z.unsqueeze(-1), (fp.height / 2).unsqueeze(-1)
        bottom = torch.cat([corners, (z - hh).unsqueeze(-1).expand(*corners.shape[:-1], 1)], -1)
        top = torch.cat([corners, (z + hh).unsqueeze(-1).expand(*corners.shape[:-1], 1)], -1)
        centre = torch.cat([self.bev_to_metric(fp.center), fp.z.unsqueeze(-1)], -1).unsqueeze(-2)
        return torch.cat([bottom, top, centre], dim=-2)

    def gather_footprint(self, footprint: Footprint, b: StreamFeatures,
                         grid_size: int = 7) -> Gathered:
        """Image features inside each box's projection (RoIAlign-style).

        The 3D box (footprint + ``z`` / ``height``, both required) has its 8 corners and
        centre projected into every view; the 2D box spans the corners in front of the
        camera, clipped to the image. A view sees the query when the centre or a corner
        projects inside the image and the clipped box is not empty; it then gives
        grid_size x grid_size bin-centre samples of stream B's finest level.

        Returns:
            :class:`Gathered`, values (P, C_b), P = grid_size^2 x seeing (query, view);
            key_position (P, 4) = (normalised u, normalised v, centre depth / max depth,
            view / V).
        """
        if footprint.z is None or footprint.height is None:
            raise ValueError("ProjectionCorrespondence.gather_footprint needs footprint.z and "
                             "footprint.height (metres) to build 3D boxes")
        require_maps(b, "stream B (cameras)", num_views=self.num_views)
        if footprint.batch_size != self.batch_size or b.batch_size != self.batch_size:
            raise ValueError(f"correspondence built for {self.batch_size} samples, footprint "
                             f"has {footprint.batch_size} and stream B {b.batch_size}")
        bsz, q, v, g = footprint.batch_size, footprint.num_queries, self.num_views, int(grid_size)
        feats = b.levels[0]
        pts = self._footprint_points(footprint).to(feats.device).float()
        pix, depth, valid = self.project_points(pts.reshape(bsz, q * 9, 3))
        pix = pix.view(bsz, v, q, 9, 2)
        depth, valid = depth.view(bsz, v, q, 9), valid.view(bsz, v, q, 9)
        front = (depth > self.eps).unsqueeze(-1)
        inf = torch.full_like(pix, float("inf"))
        lo = torch.where(front, pix, inf).amin(dim=-2)                      # (B, V, Q, 2)
        hi = torch.where(front, pix, -inf).amax(dim=-2)
        size = pix.new_tensor([self.image_shape[1], self.image_shape[0]])
        lo, hi = torch.minimum(lo.clamp(min=0), size), torch.minimum(hi.clamp(min=0), size)
        seen = (valid.any(-1) & (hi > lo).all(-1)
                & b.present_mask().to(feats.device).view(bsz, 1, 1))
        t = (torch.arange(g, device=feats.device, dtype=pix.dtype) + 0.5) / g
        gy, gx = torch.meshgrid(t, t, indexing="ij")
        frac = torch.stack([gx, gy], -1).reshape(-1, 2)                     # (G*G, 2)
        pad = self._pad_wh(pix)
        values, index, pos = [], [], []
        for s in range(bsz):
            for vi in range(v):
                qi = seen[s, vi].nonzero(as_tuple=True)[0]
                if qi.numel() == 0:
                    continue
                box_lo, box_hi = lo[s, vi, qi], hi[s, vi, qi]               # (M, 2)
                uv = (box_lo.unsqueeze(1) + frac * (box_hi - box_lo).unsqueeze(1)) / pad
                sampled = sample_maps(feats[s * v + vi:s * v + vi + 1], uv.reshape(1, -1, 2))[0]
                values.append(sampled)
                index.append((s * q + qi).repeat_interleave(g * g))
                extra = torch.stack([depth[s, vi, qi, 8].clamp(min=0) / self.max_depth,
                                     torch.full_like(qi, vi, dtype=uv.dtype) / v], -1)
                extra = extra.unsqueeze(1).expand(-1, g * g, 2)
                pos.append(torch.cat([uv, extra], -1).reshape(-1, 4))
        return assemble_gathered(values, index, pos, channels=b.channels, num_queries=q,
                                 batch_size=bsz, like=feats, position_dim=4)

    def ray_layout(self, a: StreamFeatures, b: StreamFeatures) -> RayLayout:
        """Points along each image column's ray on stream B's finest level.

        The ray of column u goes through the pixel (u centre, middle row of the network
        input). Why the middle row: for near-horizontal cameras (nuScenes) the BEV
        footprint of a column hardly depends on the row, the principal point sits close
        to the middle, and the middle row needs no assumption about the camera's tilt.
        Each ray is sampled at ``ray_depths`` (depth along the optical axis).

        Returns:
            :class:`RayLayout` with level 0, a_points (B, V, W_0, D, 2) normalised BEV
            (x, y), valid (B, V, W_0, D): inside the BEV map (and both streams present).
        """
        self._check(a, b)
        bsz, v = self.batch_size, self.num_views
        _, w0 = b.spatial_shapes[0]
        dev = b.device
        depths = self.ray_depths.to(dev)
        d = depths.numel()
        u = (torch.arange(w0, device=dev, dtype=torch.float32) + 0.5) / w0 * self.pad_shape[1]
        row = torch.full_like(u, self.image_shape[0] / 2.0)
        pixels = torch.stack([u, row], -1).repeat_interleave(d, 0)          # (W*D, 2)
        pixels = pixels.expand(bsz, v, -1, 2)
        depth = depths.repeat(w0).expand(bsz, v, -1)
        pts = self.unproject_pixels(pixels, depth)
        a_points = self.metric_to_bev(pts[..., :2]).view(bsz, v, w0, d, 2)
        valid = inside_unit(a_points) & both_present(a, b).view(bsz, 1, 1, 1)
        return RayLayout(level=0, a_points=a_points, valid=valid)
