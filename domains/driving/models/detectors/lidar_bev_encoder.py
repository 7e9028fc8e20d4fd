"""The LiDAR stream of both driving detectors as one module: voxels -> BEV map.

mean voxel features (:class:`MeanVoxelEncoder`, or :class:`DynamicMeanVoxelEncoder` for
dynamic voxels) -> sparse 3D encoder flattened to BEV
(:class:`SparseEncoderSECOND`) -> 2D backbone (:class:`SECONDBackbone`) -> neck
(:class:`SECONDFPN`). Paper settings (docs/methods/deepinteraction.md, "LiDAR stream"):
a 512-channel 180 x 180 map at stride 8 over [-54, 54] m.

Why one module: the LiDAR-only (TransFusion-L) detector and DeepInteraction share this
stream, so its parameters carry the same names (``lidar_encoder.*``) in both checkpoints
and the first training stage's weights load into the second stage key by key
(``tools/model_converters/merge_checkpoints.py``).
"""
from __future__ import annotations

from typing import Optional, Union

from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["LidarBEVEncoder"]

ModuleOrConfig = Union[nn.Module, dict]


def _build(component: ModuleOrConfig) -> nn.Module:
    return MODELS.build(component) if isinstance(component, dict) else component


@MODELS.register_module()
class LidarBEVEncoder(nn.Module):
    """Voxelised points -> one BEV feature map.

    Args:
        voxel_encoder: e.g. ``dict(type='MeanVoxelEncoder', num_features=5)``.
        middle_encoder: e.g. ``dict(type='SparseEncoderSECOND', sparse_shape=[41, 1440, 1440])``.
        backbone: e.g. ``dict(type='SECONDBackbone', in_channels=256)``; optional.
        neck: e.g. ``dict(type='SECONDFPN')``; optional (needs ``backbone``).

    Attributes:
        out_channels: C of the returned map (sum of the neck's ``out_channels``, else the
            backbone's last stage, else the middle encoder's ``bev_channels``).
        bev_shape: (H, W) of the returned map.
    """

    def __init__(self, voxel_encoder: ModuleOrConfig, middle_encoder: ModuleOrConfig,
                 backbone: Optional[ModuleOrConfig] = None,
                 neck: Optional[ModuleOrConfig] = None) -> None:
        super().__init__()
        if neck is not None and backbone is None:
            raise ValueError("LidarBEVEncoder: a neck needs a backbone")
        self.voxel_encoder = _build(voxel_encoder)
        self.middle_encoder = _build(middle_encoder)
        self.backbone = _build(backbone) if backbone is not None else None
        self.neck = _build(neck) if neck is not None else None
        height, width = self.middle_encoder.bev_shape
        if self.neck is not None:
            self.out_channels = int(sum(self.neck.out_channels))
            # The neck brings every stage to the first stage's stride.
            stride = self.backbone.layer_strides[0]
            self.bev_shape = (-(-height // stride), -(-width // stride))
        elif self.backbone is not None:
            self.out_channels = int(self.backbone.out_channels[-1])
            stride = 1
            for s in self.backbone.layer_strides:
                stride *= s
            self.bev_shape = (-(-height // stride), -(-width // stride))
        else:
            self.out_channels = int(self.middle_encoder.bev_channels)
            self.bev_shape = (height, width)
        if self.backbone is not None and self.backbone.in_channels != self.middle_encoder.bev_channels:
            raise ValueError(f"the backbone takes {self.backbone.in_channels} channels, the "
                             f"middle encoder gives {self.middle_encoder.bev_channels}")

    def forward(self, voxels: dict[str, Tensor], batch_size: int) -> Tensor:
        """Encode a batch's voxels.

        Args:
            voxels: the data preprocessor's hard voxels ``{'voxels': (M, P, C),
                'num_points': (M,), 'coors': (M, 4) int [batch, z, y, x]}``, or its dynamic
                ones ``{'voxels': (N, C) points, 'coors': (N, 4) int per point}``; M (N)
                may be 0 (no LiDAR), which gives an all-zero sparse output.
            batch_size: B.

        Returns:
            (B, out_channels, H, W) BEV map, rows along y, columns along x.
        """
        encoded = self.voxel_encoder(voxels["voxels"], voxels.get("num_points"),
                                     voxels["coors"])
        # A dynamic encoder groups the points itself and returns the voxels it made.
        features, coors = encoded if isinstance(encoded, tuple) else (encoded, voxels["coors"])
        bev = self.middle_encoder(features, coors, batch_size)
        if self.backbone is None:
            return bev
        stages = self.backbone(bev)
        if self.neck is None:
            return stages[-1]
        return self.neck(stages)[0]
