"""BEV augmentation of the LiDAR scene: global rotation / scale / translation and flips.

Each transform draws its parameters, builds the step as a 4 x 4 similarity ``S`` and
applies it to ``points`` (xyz) and ``gt_bboxes_3d`` (see :mod:`.box_transforms` for what
a box does under ``S``), then composes it into ``lidar_aug_matrix <- S @ lidar_aug_matrix``
(original points -> current points, identity before any augmentation), as BEVFusion does.

``lidar2img`` is deliberately left as the *original* calibration: the model's
:class:`~interlace.core.interaction.projection_correspondence.ProjectionCorrespondence`
projects current points with ``lidar2img @ inverse(lidar_aug_matrix)``. The cameras are
not augmented here; image augmentation lives in ``img_aug_matrix``
(:class:`~.image_transforms.ImageResizeCrop`).
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from interlace.core.engine.registry import TRANSFORMS

from .box_transforms import (flip_matrix, rotation_matrix, scale_matrix, transform_boxes,
                             transform_points, translation_matrix)

__all__ = ["GlobalRotScaleTrans", "RandomFlip3D", "apply_lidar_transform"]


def apply_lidar_transform(results: dict[str, Any], step: np.ndarray) -> dict[str, Any]:
    """Apply a (4, 4) BEV similarity ``step`` to ``points`` and ``gt_bboxes_3d`` (when
    present) and compose it into ``lidar_aug_matrix`` (float64)."""
    if "points" in results:
        results["points"] = transform_points(results["points"], step)
    if "gt_bboxes_3d" in results and len(results["gt_bboxes_3d"]):
        results["gt_bboxes_3d"] = transform_boxes(results["gt_bboxes_3d"], step)
    previous = np.asarray(results.get("lidar_aug_matrix", np.eye(4)), dtype=np.float64)
    results["lidar_aug_matrix"] = step @ previous
    return results


def _range(value: Union[float, Sequence[float]], name: str) -> tuple[float, float]:
    if np.isscalar(value):
        return -abs(float(value)), abs(float(value))
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name}: lower bound {low} is above upper bound {high}")
    return low, high


@TRANSFORMS.register_module()
class GlobalRotScaleTrans:
    """Rotate about z, scale, then translate the whole scene (mmdet3d's order).

    Args:
        rot_range: ``[low, high]`` radians (a scalar r means ``[-r, r]``); default
            ``[-pi/4, pi/4]`` as mmdet3d.
        scale_ratio_range: ``[low, high]`` uniform scale factor.
        translation_std: (3,) standard deviation of the Gaussian shift in metres.

    Records ``pcd_rotation_angle``, ``pcd_rotation`` (3, 3; row vectors multiply it, as
    mmdet3d's ``rot_mat_T``), ``pcd_scale_factor`` and ``pcd_trans``.
    """

    def __init__(self, rot_range: Union[float, Sequence[float]] = (-0.78539816, 0.78539816),
                 scale_ratio_range: Sequence[float] = (0.95, 1.05),
                 translation_std: Union[float, Sequence[float]] = (0.0, 0.0, 0.0)) -> None:
        self.rot_range = _range(rot_range, "rot_range")
        self.scale_ratio_range = _range(scale_ratio_range, "scale_ratio_range")
        if self.scale_ratio_range[0] <= 0:
            raise ValueError(f"scale_ratio_range {scale_ratio_range} must be positive")
        std = np.broadcast_to(np.asarray(translation_std, dtype=np.float64), (3,))
        if (std < 0).any():
            raise ValueError(f"translation_std {translation_std} must be non-negative")
        self.translation_std = std.copy()

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``points`` (P, C), ``gt_bboxes_3d`` (N, 9) -> same shapes, transformed;
        ``lidar_aug_matrix`` (4, 4) updated."""
        angle = float(np.random.uniform(*self.rot_range))
        scale = float(np.random.uniform(*self.scale_ratio_range))
        shift = np.random.normal(scale=self.translation_std, size=3)
        rotation = rotation_matrix(angle)
        step = translation_matrix(shift) @ scale_matrix(scale) @ rotation
        results = apply_lidar_transform(results, step)
        results["pcd_rotation_angle"] = angle
        results["pcd_rotation"] = rotation[:3, :3].T.copy()
        results["pcd_scale_factor"] = scale
        results["pcd_trans"] = shift
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rot_range={self.rot_range}, "
                f"scale_ratio_range={self.scale_ratio_range}, "
                f"translation_std={self.translation_std.tolist()})")


@TRANSFORMS.register_module()
class RandomFlip3D:
    """Random BEV flips of the scene.

    Args:
        flip_ratio_bev_horizontal: probability of flipping y (mmdet3d's "horizontal":
            left/right of the car swap; yaw -> -yaw, vy -> -vy).
        flip_ratio_bev_vertical: probability of flipping x (front/back swap;
            yaw -> pi - yaw, vx -> -vx).
        flip_mode: ``'independent'`` (default, mmdet3d's behaviour): each flip is drawn on
            its own. ``'keep_handedness'``: only the two flips together (a rotation by pi
            about z: x, y, vx, vy -> -x, -y, -vx, -vy, yaw -> yaw + pi) or none, drawn once
            with probability ``flip_ratio_bev_horizontal``, which must then equal
            ``flip_ratio_bev_vertical``.

    Why ``'keep_handedness'``: a single flip is a mirror image, and a mirror turns
    right-hand traffic into left-hand traffic. Where every scene drives on one side (the
    generated database drives on the right: same-direction lanes right of the ego,
    oncoming ones left, cars parked heading with their lane), the side of the road an
    object is on tells its direction of travel, and independent flips teach the model that
    both directions are equally likely on each side. A rotation by pi keeps the handedness
    and still shows each object class at new headings and positions. Real nuScenes mixes
    right-hand (Boston) and left-hand (Singapore) scenes, so there the mirrors cost
    nothing and the default stays mmdet3d's. Either mode keeps an object's own front and
    back consistent with its label (the flipped yaw follows the flipped points).

    Images are not flipped (a flip of the scene is carried by ``lidar_aug_matrix``).
    Records ``pcd_horizontal_flip`` / ``pcd_vertical_flip``; when they are already set
    (test-time augmentation) they are obeyed instead of drawn, in either mode.
    """

    FLIP_MODES = ("independent", "keep_handedness")

    def __init__(self, flip_ratio_bev_horizontal: float = 0.0,
                 flip_ratio_bev_vertical: float = 0.0, sync_2d: bool = False,
                 flip_mode: str = "independent") -> None:
        for name, p in (("flip_ratio_bev_horizontal", flip_ratio_bev_horizontal),
                        ("flip_ratio_bev_vertical", flip_ratio_bev_vertical)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if sync_2d:
            raise ValueError("sync_2d=True (flipping the camera images with the scene) is not "
                             "supported: multi-view images keep their geometry and the flip "
                             "is carried by lidar_aug_matrix")
        if flip_mode not in self.FLIP_MODES:
            raise ValueError(f"flip_mode must be one of {self.FLIP_MODES}, got {flip_mode!r}")
        if flip_mode == "keep_handedness" and \
                flip_ratio_bev_horizontal != flip_ratio_bev_vertical:
            raise ValueError(
                "flip_mode='keep_handedness' flips both axes together (a rotation by pi), so "
                "flip_ratio_bev_horizontal and flip_ratio_bev_vertical must be equal; got "
                f"{flip_ratio_bev_horizontal} and {flip_ratio_bev_vertical}")
        self.flip_ratio_bev_horizontal = flip_ratio_bev_horizontal
        self.flip_ratio_bev_vertical = flip_ratio_bev_vertical
        self.flip_mode = flip_mode

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``points`` (P, C), ``gt_bboxes_3d`` (N, 9) -> same shapes, flipped;
        ``lidar_aug_matrix`` (4, 4) updated."""
        if self.flip_mode == "keep_handedness":
            if "pcd_horizontal_flip" not in results and "pcd_vertical_flip" not in results:
                both = bool(np.random.rand() < self.flip_ratio_bev_horizontal)
                results["pcd_horizontal_flip"] = results["pcd_vertical_flip"] = both
            results.setdefault("pcd_horizontal_flip", False)
            results.setdefault("pcd_vertical_flip", False)
        if "pcd_horizontal_flip" not in results:
            results["pcd_horizontal_flip"] = bool(
                np.random.rand() < self.flip_ratio_bev_horizontal)
        if "pcd_vertical_flip" not in results:
            results["pcd_vertical_flip"] = bool(np.random.rand() < self.flip_ratio_bev_vertical)
        if results["pcd_horizontal_flip"]:
            results = apply_lidar_transform(results, flip_matrix("horizontal"))
        if results["pcd_vertical_flip"]:
            results = apply_lidar_transform(results, flip_matrix("vertical"))
        results.setdefault("lidar_aug_matrix", np.eye(4))
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(flip_ratio_bev_horizontal="
                f"{self.flip_ratio_bev_horizontal}, flip_ratio_bev_vertical="
                f"{self.flip_ratio_bev_vertical}, flip_mode={self.flip_mode!r})")
