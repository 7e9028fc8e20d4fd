"""Voxel feature encoders of the LiDAR stream: the mean of each voxel's points
(mmdet3d's ``HardSimpleVFE`` / ``DynamicSimpleVFE``; DeepInteraction++ uses the hard one
unchanged, see docs/methods/deepinteraction.md, "LiDAR stream"), optionally normalised
per channel.

Why a normalisation: the raw nuScenes point channels have very different spreads (x, y
over tens of metres, intensity up to 255, the sweeps' time lag within 0.5 s), so the
sparse encoder's first conv sees the time lag, the only motion cue, at about a thousandth
of the other channels' size. ``(mean - feature_offset) / feature_scale`` brings every
channel to about [-1, 1]. It is applied to the voxel mean, which equals the mean of the
normalised points because the map is affine. Without the two options the features are
the raw means, bit for bit as before (paper configs and existing checkpoints unchanged;
the constants are non-persistent buffers, so checkpoints never hold them).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.ops.voxelize import dynamic_scatter_mean, mean_voxel_features

__all__ = ["MeanVoxelEncoder", "DynamicMeanVoxelEncoder", "point_feature_normalization",
           "LIDAR_SWEEP_PERIOD_S"]

# nuScenes' LiDAR spins at 20 Hz: consecutive sweeps are 0.05 s apart.
LIDAR_SWEEP_PERIOD_S = 0.05


def point_feature_normalization(point_cloud_range: Sequence[float], sweeps_num: int,
                                sweep_period: float = LIDAR_SWEEP_PERIOD_S,
                                intensity_range: Sequence[float] = (0.0, 255.0)
                                ) -> dict[str, list[float]]:
    """The ``feature_offset`` / ``feature_scale`` that map [x, y, z, intensity, time lag]
    to about [-1, 1] (the lag to [0, 1]).

    x, y, z: centre and half-size of the range; intensity: centre and half-width of
    ``intensity_range``; time lag: offset 0 and scale the sweep window
    ``sweeps_num * sweep_period`` (0.5 s for 10 sweeps at 20 Hz), the largest lag merged.

    Args:
        point_cloud_range: ``[x0, y0, z0, x1, y1, z1]``.
        sweeps_num: previous sweeps merged (``LoadPointsFromMultiSweeps.sweeps_num``); 0
            leaves the lag unscaled (it is 0 everywhere).
        sweep_period: seconds between sweeps.
        intensity_range: (low, high) of the intensity channel.

    Returns:
        ``dict(feature_offset=[5 floats], feature_scale=[5 floats])``, the keyword arguments
        of :class:`MeanVoxelEncoder` (write the numbers into a config).
    """
    lo, hi = [float(v) for v in point_cloud_range[:3]], [float(v) for v in point_cloud_range[3:]]
    i_lo, i_hi = float(intensity_range[0]), float(intensity_range[1])
    window = sweeps_num * sweep_period if sweeps_num > 0 else 1.0
    offset = [(a + b) / 2 for a, b in zip(lo, hi)] + [(i_lo + i_hi) / 2, 0.0]
    scale = [(b - a) / 2 for a, b in zip(lo, hi)] + [(i_hi - i_lo) / 2, window]
    return dict(feature_offset=offset, feature_scale=scale)


class _Normalization(nn.Module):
    """``(x - offset) / scale`` per channel, or the identity when neither is given."""

    def __init__(self, num_features: int, feature_offset: Optional[Sequence[float]],
                 feature_scale: Optional[Sequence[float]]) -> None:
        super().__init__()
        self.enabled = feature_offset is not None or feature_scale is not None
        offset = torch.zeros(num_features) if feature_offset is None else \
            torch.as_tensor(feature_offset, dtype=torch.float32).flatten()
        scale = torch.ones(num_features) if feature_scale is None else \
            torch.as_tensor(feature_scale, dtype=torch.float32).flatten()
        for name, value in (("feature_offset", offset), ("feature_scale", scale)):
            if value.numel() != num_features:
                raise ValueError(f"{name} has {value.numel()} values for num_features="
                                 f"{num_features}")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} must be finite, got {value.tolist()}")
        if bool((scale <= 0).any()):
            raise ValueError(f"feature_scale must be positive, got {scale.tolist()}")
        # Not persistent: checkpoints saved before the option existed load strictly, and
        # the config, not the checkpoint, says how inputs are normalised.
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        """(M, C) -> (M, C); the input itself when disabled (bitwise the raw means)."""
        if not self.enabled:
            return features
        return (features - self.offset.to(features.dtype)) / self.scale.to(features.dtype)

    def describe(self) -> str:
        if not self.enabled:
            return ""
        # %g: the float32 buffers would print 51.2 as 51.200001.
        offset = ", ".join(f"{v:g}" for v in self.offset.tolist())
        scale = ", ".join(f"{v:g}" for v in self.scale.tolist())
        return f", feature_offset=[{offset}], feature_scale=[{scale}]"


@MODELS.register_module()
class MeanVoxelEncoder(nn.Module):
    """Average the real points of every hard voxel; no learnable parameters.

    Args:
        num_features: leading point columns averaged (5 for nuScenes: x, y, z,
            intensity, time lag); must not exceed the voxels' C.
        feature_offset: (num_features,) subtracted from each channel's mean; None: 0.
        feature_scale: (num_features,) positive, divides each channel after the offset
            (e.g. the sweep window for the lag); None: 1. With neither, the output is the
            raw mean. :func:`point_feature_normalization` gives the usual numbers.
    """

    def __init__(self, num_features: int = 5, feature_offset: Optional[Sequence[float]] = None,
                 feature_scale: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = int(num_features)
        self.norm = _Normalization(self.num_features, feature_offset, feature_scale)

    def forward(self, voxels: Tensor, num_points: Tensor,
                coors: Optional[Tensor] = None) -> Tensor:
        """Mean voxel features.

        Args:
            voxels: (M, P, C) zero-padded points per voxel (hard voxelisation).
            num_points: (M,) int, real points per voxel (they fill the first slots).
            coors: (M, 4) voxel coordinates; unused, accepted for mmdet3d's call signature.

        Returns:
            (M, num_features) float, the (normalised) mean of each voxel's real points.
        """
        if voxels.dim() != 3:
            raise ValueError(f"voxels must be (M, P, C), got {tuple(voxels.shape)}; per-point "
                             f"(N, C) input comes from dynamic voxelisation (max_num_points="
                             f"-1) and needs DynamicMeanVoxelEncoder")
        if voxels.shape[2] < self.num_features:
            raise ValueError(f"voxels have {voxels.shape[2]} point features, MeanVoxelEncoder "
                             f"averages num_features={self.num_features}")
        # Masking the padding slots (instead of summing and dividing, as HardSimpleVFE
        # does) keeps the mean right even if a caller's padding is not zero.
        return self.norm(mean_voxel_features(voxels[:, :, :self.num_features], num_points))

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}{self.norm.describe()}"


@MODELS.register_module()
class DynamicMeanVoxelEncoder(MeanVoxelEncoder):
    """Average every point of each voxel (dynamic voxelisation: nothing dropped for a
    points-per-voxel cap, and the mean does not depend on the points' order).

    Takes the data preprocessor's output with ``voxel_layer.max_num_points=-1``: the
    in-range points and their voxel coordinates. Same arguments as
    :class:`MeanVoxelEncoder`.
    """

    def forward(self, voxels: Tensor, num_points: Optional[Tensor] = None,  # type: ignore[override]
                coors: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Group points by voxel and average them.

        Args:
            voxels: (N, C) points (x, y, z first), every one of them inside the grid.
            num_points: unused (hard voxelisation's counts), accepted for a shared call.
            coors: (N, 4) int [batch, z, y, x] voxel of each point; rows with a negative
                entry are dropped.

        Returns:
            features (M, num_features) float, the (normalised) mean of each voxel's points;
            voxel_coors (M, 4) int32 [batch, z, y, x], sorted lexicographically.
        """
        if voxels.dim() != 2 or coors is None or coors.dim() != 2 \
                or coors.shape[0] != voxels.shape[0]:
            raise ValueError(
                f"DynamicMeanVoxelEncoder takes (N, C) points and (N, 4) coors (dynamic "
                f"voxelisation, voxel_layer max_num_points=-1), got voxels "
                f"{tuple(voxels.shape)} and coors "
                f"{None if coors is None else tuple(coors.shape)}")
        if voxels.shape[1] < self.num_features:
            raise ValueError(f"points have {voxels.shape[1]} features, DynamicMeanVoxelEncoder "
                             f"averages num_features={self.num_features}")
        voxel_coors, _, means = dynamic_scatter_mean(voxels[:, :self.num_features], coors)
        return self.norm(means), voxel_coors
