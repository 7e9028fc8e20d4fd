"""The LiDAR <-> camera correspondence of one batch, built from the data preprocessor's
``batch_geometry`` (DeepInteraction++: projection of LiDAR points into the views, lifting
of pixels back into the BEV).

Missing cameras. :class:`~interlace.core.interaction.ProjectionCorrespondence` has no
notion of a missing view: it projects into every view it has a matrix for. A missing view's
features are zeros (:class:`MultiViewImageEncoder`), so sampling them would add zeros as
if they were evidence ("this pillar looks like nothing"). Instead the view gets a
``lidar2img`` that sees nothing: every point of the scene lands behind its camera (depth
< 0, so no projection is valid), and every pixel lifted from it lands about 10 km away
(outside the BEV, so no ray or lifted pixel is valid). :func:`hide_missing_views` builds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from interlace.core.interaction import ProjectionCorrespondence

__all__ = ["hide_missing_views", "BlindViewGeometry", "build_batch_correspondence",
           "absent_camera_correspondence"]

# Metres to a blind view's camera centre: far beyond any BEV range and any ray depth
# (61 m), small enough that float32 keeps centimetre precision of the scene's points.
_BLIND_OFFSET = 1.0e4


@dataclass(frozen=True)
class BlindViewGeometry:
    """A lidar2img (4, 4) whose camera sits _BLIND_OFFSET metres along -x, looking along -x:
    depth = -x - offset < 0 for every point with x > -offset; invertible, so pixels lift
    (to x < -offset)."""

    offset: float = _BLIND_OFFSET

    def matrix(self, device: torch.device) -> Tensor:
        mat = torch.zeros(4, 4, device=device)
        mat[0, 1] = 1.0                    # pixel u from y
        mat[1, 2] = 1.0                    # pixel v from z
        mat[2, 0], mat[2, 3] = -1.0, -self.offset  # depth
        mat[3, 3] = 1.0
        return mat


def hide_missing_views(lidar2img: Tensor, view_missing: Optional[Tensor]) -> Tensor:
    """lidar2img (B, V, 4, 4) with missing views (view_missing (B, V) bool True) replaced
    by :class:`BlindViewGeometry` (see the module docstring); a copy, the input is kept."""
    if view_missing is None or not bool(view_missing.any()):
        return lidar2img
    blind = BlindViewGeometry().matrix(lidar2img.device).to(lidar2img.dtype)
    return torch.where(view_missing.to(torch.bool)[..., None, None], blind, lidar2img)


def _image_shape(data_samples: Optional[Sequence[Any]], fallback: Sequence[int]) -> tuple[int, int]:
    """The network-input image size (H, W) before padding, from the first sample that
    records it (``img_shape``; every sample of a batch has the same after ImageResizeCrop)."""
    for sample in data_samples or ():
        shape = getattr(sample, "metainfo", {}).get("img_shape")
        if shape is not None:
            return (int(shape[0]), int(shape[1]))
    return (int(fallback[0]), int(fallback[1]))


def build_batch_correspondence(geometry: dict[str, Any], pillar_points: Sequence[Tensor],
                               bev_range: Sequence[float], view_missing: Optional[Tensor],
                               data_samples: Optional[Sequence[Any]] = None,
                               max_points_per_pillar: int = 20,
                               ray_depths: Optional[Sequence[float]] = None
                               ) -> ProjectionCorrespondence:
    """The correspondence between the BEV and the camera views of a batch.

    Args:
        geometry: ``DrivingDataPreprocessor``'s ``batch_geometry`` with images:
            lidar2img (B, V, 4, 4), img_aug_matrix (B, V, 4, 4), lidar_aug_matrix (B, 4, 4),
            batch_input_shape (H_pad, W_pad).
        pillar_points: B tensors (K_b, C) from :class:`PillarPointGrid` (current frame).
        bev_range: (x0, y0, x1, y1) metres covered by the BEV map.
        view_missing: (B, V) bool, True where a camera is absent (hidden, see
            :func:`hide_missing_views`).
        data_samples: give the unpadded input size (``img_shape``).
        max_points_per_pillar, ray_depths: of :class:`ProjectionCorrespondence`.
    """
    pad_shape = tuple(geometry["batch_input_shape"])
    lidar2img = hide_missing_views(geometry["lidar2img"], view_missing)
    return ProjectionCorrespondence(
        lidar2img, _image_shape(data_samples, pad_shape), bev_range,
        img_aug=geometry["img_aug_matrix"], bev_aug=geometry["lidar_aug_matrix"],
        pillar_points=list(pillar_points), max_points_per_pillar=max_points_per_pillar,
        pad_shape=pad_shape,
        ray_depths=torch.as_tensor(ray_depths) if ray_depths is not None else None)


def absent_camera_correspondence(batch_size: int, bev_range: Sequence[float],
                                 device: torch.device) -> ProjectionCorrespondence:
    """A correspondence for a batch without cameras: one blind 1 x 1 view per sample. The
    encoder still needs one to run; with stream B marked absent it yields no pairs and no
    valid rays, so stream A takes its intra-modal (LiDAR-only) path."""
    blind = BlindViewGeometry().matrix(device).expand(batch_size, 1, 4, 4)
    return ProjectionCorrespondence(blind, (1, 1), bev_range,
                                    pillar_points=[torch.zeros(0, 3, device=device)] * batch_size)
