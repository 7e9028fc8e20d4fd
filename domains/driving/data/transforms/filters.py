"""Filters of points and ground-truth objects, and point shuffling (mmdet3d's semantics).

Ranges are ``point_cloud_range = [x0, y0, z0, x1, y1, z1]`` in the current LiDAR frame
and are open intervals (``x0 < x < x1``), as mmdet3d's ``in_range_3d`` / ``in_range_bev``.
"""
from __future__ import annotations

import zlib
from typing import Any, Optional, Sequence

import numpy as np

from interlace.core.engine.registry import TRANSFORMS

from .box_transforms import limit_yaw

__all__ = ["PointsRangeFilter", "ObjectRangeFilter", "ObjectNameFilter", "PointShuffle",
           "select_objects"]

# Per-object arrays that follow gt_bboxes_3d when objects are dropped or reordered.
_OBJECT_KEYS = ("gt_bboxes_3d", "gt_labels_3d", "attr_labels", "gt_names", "num_lidar_pts")


def _check_range(point_cloud_range: Sequence[float]) -> np.ndarray:
    pcr = np.asarray(point_cloud_range, dtype=np.float64)
    if pcr.shape != (6,) or (pcr[3:] <= pcr[:3]).any():
        raise ValueError(f"point_cloud_range must be [x0, y0, z0, x1, y1, z1] with x0 < x1 "
                         f"etc., got {list(point_cloud_range)}")
    return pcr


def select_objects(results: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """Keep the objects where ``keep`` (N,) is true in every per-object array present."""
    for key in _OBJECT_KEYS:
        if key in results:
            value = results[key]
            results[key] = (value[keep] if isinstance(value, np.ndarray)
                            else [v for v, k in zip(value, keep) if k])
    return results


@TRANSFORMS.register_module()
class PointsRangeFilter:
    """Keep the points inside ``point_cloud_range`` (open box in x, y and z).

    Args:
        point_cloud_range: [x0, y0, z0, x1, y1, z1] metres.
    """

    def __init__(self, point_cloud_range: Sequence[float]) -> None:
        self.pcr = _check_range(point_cloud_range)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``points`` (P, C) -> (P', C), P' <= P, order kept."""
        p = results["points"]
        x0, y0, z0, x1, y1, z1 = (float(v) for v in self.pcr)
        # Column by column against Python floats: no float64 copy of the (P, 3) block.
        inside = ((p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)
                  & (p[:, 2] > z0) & (p[:, 2] < z1))
        results["points"] = p[inside]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(point_cloud_range={self.pcr.tolist()})"


@TRANSFORMS.register_module()
class ObjectRangeFilter:
    """Keep the objects whose BEV centre lies inside the range, then wrap yaw into
    ``[-pi, pi)`` (mmdet3d's ``limit_yaw(offset=0.5, period=2 pi)``).

    Args:
        point_cloud_range: [x0, y0, z0, x1, y1, z1]; only x and y are used.
    """

    def __init__(self, point_cloud_range: Sequence[float]) -> None:
        self.pcr = _check_range(point_cloud_range)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``gt_bboxes_3d`` (N, 9) -> (N', 9) and the labels etc. alike (no-op without
        ground truth)."""
        if "gt_bboxes_3d" not in results:
            return results
        boxes = results["gt_bboxes_3d"]
        x0, y0, _, x1, y1, _ = self.pcr
        keep = ((boxes[:, 0] > x0) & (boxes[:, 1] > y0)
                & (boxes[:, 0] < x1) & (boxes[:, 1] < y1))
        results = select_objects(results, keep)
        if len(results["gt_bboxes_3d"]):
            boxes = results["gt_bboxes_3d"].copy()
            boxes[:, 6] = limit_yaw(boxes[:, 6])
            results["gt_bboxes_3d"] = boxes
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(point_cloud_range={self.pcr.tolist()})"


@TRANSFORMS.register_module()
class ObjectNameFilter:
    """Keep the objects whose label is one of ``classes`` (label index < len(classes);
    the info files give -1 to categories outside the detection classes).

    Args:
        classes: the class names of the task (label i is ``classes[i]``).
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``gt_labels_3d`` (N,) -> (N',) and the boxes etc. alike (no-op without
        ground truth)."""
        if "gt_labels_3d" not in results:
            return results
        labels = np.asarray(results["gt_labels_3d"])
        keep = (labels >= 0) & (labels < len(self.classes))
        return select_objects(results, keep)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(classes={self.classes})"


@TRANSFORMS.register_module()
class PointShuffle:
    """Shuffle the order of the points (hard voxelisation keeps the first points of a full
    voxel, so the order must not favour one sweep).

    Args:
        seed: None (training): a fresh permutation from numpy's global generator each
            call. An int (test pipelines): the permutation is drawn from a generator seeded
            with ``seed`` and the sample's ``token`` (else ``sample_idx``, else the LiDAR
            path), so a sample is shuffled the same way in every run and process, while
            full voxels keep the same share of sweep points as in training. Without any
            shuffle the key frame's points, which come first, fill full voxels, and the
            sweeps' share of the kept points falls.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = None if seed is None else int(seed)

    def _generator(self, results: dict[str, Any]) -> np.random.Generator:
        key = results.get("token")
        if key is None:
            key = results.get("sample_idx")
        if key is None:
            key = (results.get("lidar_points") or {}).get("lidar_path")
        # crc32, not hash(): Python salts str hashes per process.
        salt = zlib.crc32(str(key).encode("utf-8")) if key is not None else 0
        return np.random.default_rng([self.seed, salt])

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``points`` (P, C) -> (P, C) permuted."""
        count = len(results["points"])
        order = (np.random.permutation(count) if self.seed is None
                 else self._generator(results).permutation(count))
        results["points"] = results["points"][order]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}()" if self.seed is None else \
            f"{type(self).__name__}(seed={self.seed})"
