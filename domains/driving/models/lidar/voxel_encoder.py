"""Voxel feature encoder of the LiDAR stream: the mean of each voxel's points
(mmdet3d's ``HardSimpleVFE``; DeepInteraction++ uses it unchanged, see
docs/methods/deepinteraction.md, "LiDAR stream")."""
from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.ops.voxelize import mean_voxel_features

__all__ = ["MeanVoxelEncoder"]


@MODELS.register_module()
class MeanVoxelEncoder(nn.Module):
    """Average the real points of every hard voxel; no learnable parameters.

    Args:
        num_features: leading point columns averaged (5 for nuScenes: x, y, z,
            intensity, time lag); must not exceed the voxels' C.
    """

    def __init__(self, num_features: int = 5) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = int(num_features)

    def forward(self, voxels: Tensor, num_points: Tensor,
                coors: Optional[Tensor] = None) -> Tensor:
        """Mean voxel features.

        Args:
            voxels: (M, P, C) zero-padded points per voxel (hard voxelisation).
            num_points: (M,) int, real points per voxel (they fill the first slots).
            coors: (M, 4) voxel coordinates; unused, accepted for mmdet3d's call signature.

        Returns:
            (M, num_features) float, the mean of each voxel's real points.
        """
        if voxels.dim() != 3:
            raise ValueError(f"voxels must be (M, P, C), got {tuple(voxels.shape)}")
        if voxels.shape[2] < self.num_features:
            raise ValueError(f"voxels have {voxels.shape[2]} point features, MeanVoxelEncoder "
                             f"averages num_features={self.num_features}")
        # Masking the padding slots (instead of summing and dividing, as HardSimpleVFE
        # does) keeps the mean right even if a caller's padding is not zero.
        return mean_voxel_features(voxels[:, :, :self.num_features], num_points)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}"
