"""DeepInteraction / DeepInteraction++: the LiDAR-camera 3D detector whose two streams
keep their own representations and exchange information through interaction layers
(Yang et al., NeurIPS 2022, and DeepInteraction++; docs/methods/deepinteraction.md).

Per batch (paper shapes; B samples, V = 6 cameras at 448 x 800; any V works, and a batch
without images takes the LiDAR-only path)::

    voxels --LidarBEVEncoder--> bev (B, 512, 180, 180) --1x1 conv--> A level 0 (B, 128, 180, 180)
                                                     [--2x avg pool--> A level 1 (B, 128, 90, 90)]
    images --MultiViewImageEncoder--> FPN levels (B, V, 256, 112, 200) [, (B, V, 256, 56, 100)]
           --1x1 conv per level--> B levels (B * V, 128, h_l, w_l)
    points --PillarPointGrid--> pillar points --> ProjectionCorrespondence (lidar2img,
           img_aug_matrix, lidar_aug_matrix, padded input shape)
    (A, B) --DualStreamEncoder (2 layers x 128)--> (A', B')
    InteractionDetectionHead(A', B', correspondence, lidar_only_bev=bev): heatmap of A'
           averaged with the LiDAR-only heatmap of bev (DI++), 200 queries, decoder layers
           ('a', 'b', 'a', 'b', 'a'): one LiDAR layer then 4 alternating.

Missing inputs: :mod:`.modality_dropping` (whole modalities), and ``view_missing`` (single
cameras; their features are zeros and the correspondence is blind to them, see
:mod:`.batch_correspondence`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.interaction import StreamFeatures

from .batch_correspondence import absent_camera_correspondence, build_batch_correspondence
from .detector_base import DrivingDetectorBase, ModuleOrConfig, build_component

__all__ = ["DeepInteractionDetector"]


def _projection(in_channels: int, out_channels: int) -> nn.Module:
    # A 1x1 conv only where widths differ: the stream keeps its features otherwise.
    return (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
            else nn.Identity())


@MODELS.register_module()
class DeepInteractionDetector(DrivingDetectorBase):
    """LiDAR + multi-camera 3D detector with representational and predictive interaction.

    Args:
        lidar_encoder: :class:`LidarBEVEncoder` config.
        camera_encoder: :class:`MultiViewImageEncoder` config (backbone + FPN).
        pillar_grid: :class:`PillarPointGrid` config; its cells must be the BEV map's
            (``grid_shape == lidar_encoder.bev_shape``) and its range the head's.
        interaction_encoder: :class:`DualStreamEncoder` config; ``embed_dims``,
            ``num_levels_a`` / ``num_levels_b`` and the key-position sizes are filled in.
        bbox_head: :class:`InteractionDetectionHead` config; ``in_channels``,
            ``b_channels`` (= ``embed_dims``) and ``lidar_only_in_channels`` are filled in.
        embed_dims: width of both streams in the encoder (128).
        num_bev_levels: BEV levels of stream A: level 0 is the projected BEV, each further
            level a 2x average pool of the previous one.
        use_lidar_only_heatmap: average the LiDAR-only BEV's heatmap into the query
            selection (DeepInteraction++); False selects on the interacted BEV alone.
        ray_depths: depths (m) of global dense spreading along camera columns (default
            60 bins from 1 to 61 m).
        data_preprocessor, drop_modalities, drop_views, drop_views_seed, init_cfg: as
            :class:`DrivingDetectorBase`.
    """

    def __init__(self, lidar_encoder: ModuleOrConfig, camera_encoder: ModuleOrConfig,
                 pillar_grid: ModuleOrConfig, interaction_encoder: ModuleOrConfig,
                 bbox_head: ModuleOrConfig, embed_dims: int = 128, num_bev_levels: int = 1,
                 use_lidar_only_heatmap: bool = True,
                 ray_depths: Optional[Sequence[float]] = None,
                 data_preprocessor: Optional[ModuleOrConfig] = None,
                 drop_modalities: Sequence[str] = (),
                 drop_views: Union[int, Sequence[int]] = 0, drop_views_seed: int = 0,
                 init_cfg: Optional[dict] = None) -> None:
        if num_bev_levels < 1:
            raise ValueError(f"num_bev_levels must be >= 1, got {num_bev_levels}")
        lidar_encoder = build_component(lidar_encoder)
        camera_encoder = build_component(camera_encoder)
        lidar_channels = lidar_encoder.out_channels
        if isinstance(bbox_head, dict):
            bbox_head = dict(bbox_head)
            bbox_head.setdefault("in_channels", embed_dims)
            bbox_head.setdefault("b_channels", embed_dims)
            if use_lidar_only_heatmap:
                bbox_head.setdefault("lidar_only_in_channels", lidar_channels)
        super().__init__(lidar_encoder, bbox_head, data_preprocessor, drop_modalities,
                         drop_views, drop_views_seed, init_cfg)
        self.camera_encoder = camera_encoder
        self.pillar_grid = build_component(pillar_grid)
        if isinstance(interaction_encoder, dict):
            interaction_encoder = dict(interaction_encoder)
            interaction_encoder.setdefault("type", "DualStreamEncoder")
            interaction_encoder.setdefault("embed_dims", embed_dims)
            interaction_encoder.setdefault("num_levels_a", num_bev_levels)
            interaction_encoder.setdefault("num_levels_b", len(camera_encoder.out_channels))
            # ProjectionCorrespondence's key positions: (u, v, depth, view) for pairs of
            # BEV queries, normalised BEV (x, y) for pairs of image queries.
            interaction_encoder.setdefault("key_pos_dims_a", 4)
            interaction_encoder.setdefault("key_pos_dims_b", 2)
        self.interaction_encoder = build_component(interaction_encoder)
        self.embed_dims = int(embed_dims)
        self.num_bev_levels = int(num_bev_levels)
        self.use_lidar_only_heatmap = bool(use_lidar_only_heatmap)
        self.ray_depths = tuple(float(d) for d in ray_depths) if ray_depths is not None else None
        self.bev_proj = _projection(lidar_channels, self.embed_dims)
        self.image_proj = nn.ModuleList(_projection(c, self.embed_dims)
                                        for c in camera_encoder.out_channels)
        self._check_grids()

    def _check_grids(self) -> None:
        """The pillar grid, the BEV map and the head's box coder must describe one grid:
        the correspondence places pillar points by the grid's cells and the head decodes
        boxes by the coder's."""
        grid, bev = tuple(self.pillar_grid.grid_shape), tuple(self.lidar_encoder.bev_shape)
        if grid != bev:
            raise ValueError(f"pillar grid {grid} (H, W) differs from the LiDAR BEV map {bev}: "
                             "set pillar_size = voxel_size x BEV stride")
        coder = self.bbox_head.bbox_coder
        if tuple(coder.grid_shape) != bev:
            raise ValueError(f"the head's box coder expects a {coder.grid_shape} map, the "
                             f"LiDAR stream gives {bev}")
        head_range = (coder.pc_range[0], coder.pc_range[1], coder.pc_range[3], coder.pc_range[4])
        if any(abs(a - b) > 1e-4 for a, b in zip(head_range, self.pillar_grid.bev_range)):
            raise ValueError(f"pillar grid range {self.pillar_grid.bev_range} differs from the "
                             f"head's {head_range}")

    # --- streams -----------------------------------------------------------------------
    def bev_levels(self, bev: Tensor) -> list[Tensor]:
        """Stream A's levels: (B, C, H, W), then (B, C, H / 2, W / 2), ..."""
        levels = [self.bev_proj(bev)]
        for _ in range(1, self.num_bev_levels):
            levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
        return levels

    def image_levels(self, imgs: Tensor, view_missing: Optional[Tensor]) -> list[Tensor]:
        """Stream B's levels, each (B * V, C, h_l, w_l), from images (B, V, 3, H, W)."""
        feats = self.camera_encoder(imgs, view_missing)
        levels = []
        for proj, level in zip(self.image_proj, feats):
            levels.append(proj(level.flatten(0, 1)))
        return levels

    def _absent_cameras(self, a: StreamFeatures, batch: int) -> StreamFeatures:
        """A stand-in stream B marked absent (1 x 1 maps, one view): the encoder's layers
        need a B stream with their level count; absent, it yields no cross-modal update."""
        like = a.levels[0]
        levels = [like.new_zeros(batch, self.embed_dims, 1, 1) for _ in self.image_proj]
        return StreamFeatures(levels=levels, num_views=1,
                              present=torch.zeros(batch, dtype=torch.bool, device=like.device))

    def head_inputs(self, inputs: dict[str, Any],
                    data_samples: Optional[Sequence[Any]]) -> dict[str, Any]:
        """Both streams through the interaction encoder; see the module docstring."""
        batch = len(inputs["points"])
        geometry = inputs["batch_geometry"]
        bev = self.extract_bev(inputs)
        a = StreamFeatures(levels=self.bev_levels(bev),
                           present=torch.ones(batch, dtype=torch.bool, device=bev.device))
        imgs, view_missing = inputs.get("imgs"), geometry.get("view_missing")
        bev_range = self.pillar_grid.bev_range
        if imgs is None:
            b = self._absent_cameras(a, batch)
            correspondence = absent_camera_correspondence(batch, bev_range, bev.device)
        else:
            present = geometry["img_present"].to(torch.bool)
            if view_missing is not None:
                present = present & ~view_missing.to(torch.bool).all(dim=1)
            b = StreamFeatures(levels=self.image_levels(imgs, view_missing),
                               num_views=imgs.shape[1], present=present)
            correspondence = build_batch_correspondence(
                geometry, self.pillar_grid(inputs["points"]), bev_range, view_missing,
                data_samples, self.pillar_grid.max_points_per_pillar, self.ray_depths)
        a, b = self.interaction_encoder(a, b, correspondence)
        camera = imgs is not None and bool(b.present_mask().any())
        return dict(a=a, b=b if camera else None, correspondence=correspondence if camera else None,
                    lidar_only_bev=bev if self.use_lidar_only_heatmap else None)
