"""Packing a transformed sample into model inputs and a data sample (mmdet3d's
``Pack3DDetInputs``, with mmengine's ``BaseDataElement`` / ``InstanceData``)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from mmengine.structures import BaseDataElement, InstanceData

from interlace.core.engine.registry import TRANSFORMS

__all__ = ["Pack3DDetInputs", "DEFAULT_META_KEYS"]

DEFAULT_META_KEYS: tuple[str, ...] = (
    "token", "sample_idx", "scene_token", "timestamp", "lidar_path", "num_pts_feats",
    "img_path", "cam_names", "ori_shape", "img_shape", "cam2img", "lidar2cam", "lidar2img",
    "img_aug_matrix", "lidar_aug_matrix", "view_missing", "ego2global", "lidar2ego",
    "num_sweeps_used", "num_invalid_points", "pcd_horizontal_flip", "pcd_vertical_flip",
    "pcd_rotation_angle", "pcd_scale_factor", "pcd_trans", "img_norm_cfg")

# Calibration / augmentation matrices: float32 in the metainfo (as the model's tensors).
_MATRIX_KEYS = ("cam2img", "lidar2cam", "lidar2img", "img_aug_matrix", "lidar_aug_matrix",
                "ego2global", "lidar2ego")
# Keys nested under `lidar_points` in the info-file layout.
_LIDAR_POINT_KEYS = {"lidar_path": "lidar_path", "lidar2ego": "lidar2ego",
                     "num_pts_feats": "num_pts_feats"}
_INSTANCE_FIELDS = {"gt_bboxes_3d": ("bboxes_3d", torch.float32),
                    "gt_labels_3d": ("labels_3d", torch.long),
                    "attr_labels": ("attr_labels", torch.long)}


def _meta_value(results: dict[str, Any], key: str) -> Any:
    if key in results:
        value = results[key]
    elif key in _LIDAR_POINT_KEYS and key in (results.get("lidar_points") or {}):
        value = results["lidar_points"][_LIDAR_POINT_KEYS[key]]
    elif key == "lidar_aug_matrix" and "points" in results:
        value = np.eye(4)  # no LiDAR augmentation ran
    else:
        raise KeyError(key)
    if key in _MATRIX_KEYS:
        return np.asarray(value, dtype=np.float32)
    if key in ("img_shape", "ori_shape"):
        return tuple(int(v) for v in value)
    return value


def _stack_channels_first(images: Sequence[np.ndarray]) -> torch.Tensor:
    """V arrays (H, W, C) -> (V, C, H, W) tensor in a single copy (the float images of a
    nuScenes sample are ~26 MB; stacking then permuting would copy them twice)."""
    shapes = {np.shape(image) for image in images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"Pack3DDetInputs: img must be V images (H, W, C) of one size, got "
                         f"shapes {sorted(shapes)}")
    height, width, channels = shapes.pop()
    out = np.empty((len(images), channels, height, width), dtype=np.asarray(images[0]).dtype)
    for view, image in enumerate(images):
        out[view] = np.moveaxis(np.asarray(image), -1, 0)
    return torch.from_numpy(out)


@TRANSFORMS.register_module()
class Pack3DDetInputs:
    """Collect model inputs, ground truth and metainfo.

    Args:
        keys: what to pack: ``points``, ``img`` go to ``inputs``; ``gt_bboxes_3d``,
            ``gt_labels_3d`` (and ``attr_labels``) to ``data_samples.gt_instances_3d``.
            Keys absent from the sample (e.g. ground truth at test time) are skipped.
        meta_keys: results keys copied to the data sample's metainfo when present
            (``lidar_path``, ``lidar2ego``, ``num_pts_feats`` are also found under
            ``lidar_points``). Matrices become float32 arrays.
    """

    def __init__(self, keys: Sequence[str] = ("points", "img", "gt_bboxes_3d", "gt_labels_3d"),
                 meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        unknown = set(keys) - {"points", "img", *_INSTANCE_FIELDS}
        if unknown:
            raise ValueError(f"Pack3DDetInputs: cannot pack keys {sorted(unknown)}; known: "
                             f"points, img, {', '.join(_INSTANCE_FIELDS)}")
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """Returns ``{'inputs': {'points': (P, C) float32, 'img': (V, 3, H, W)},
        'data_samples': BaseDataElement}``; the data sample carries the metainfo and
        ``gt_instances_3d = InstanceData(bboxes_3d (N, 9) float32, labels_3d (N,) long)``."""
        inputs: dict[str, torch.Tensor] = {}
        if "points" in self.keys and "points" in results:
            inputs["points"] = torch.from_numpy(
                np.ascontiguousarray(results["points"], dtype=np.float32))
        if "img" in self.keys and "img" in results:
            inputs["img"] = _stack_channels_first(results["img"])

        metainfo = {}
        for key in self.meta_keys:
            try:
                metainfo[key] = _meta_value(results, key)
            except KeyError:
                continue
        data_sample = BaseDataElement(metainfo=metainfo)
        fields = {}
        for key, (name, dtype) in _INSTANCE_FIELDS.items():
            if key in self.keys and key in results:
                fields[name] = torch.as_tensor(np.asarray(results[key]), dtype=dtype)
        if fields:
            data_sample.gt_instances_3d = InstanceData(**fields)
        return {"inputs": inputs, "data_samples": data_sample}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={self.keys})"
