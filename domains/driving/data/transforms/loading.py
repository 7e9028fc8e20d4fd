"""Loading LiDAR points (key frame and previous sweeps) and 3D annotations.

Points are kept as a float32 numpy array ``(P, 5)``: ``x, y, z, intensity, time_lag``
in the key frame's LiDAR frame (x forward, y left, z up), the nuScenes ``.pcd.bin``
layout with its fifth column (ring index) replaced by the time lag in seconds, as
mmdet3d's ``LoadPointsFromMultiSweeps`` does.

Bad input:

- a ``.pcd.bin`` whose size is not a multiple of ``load_dim * 4`` bytes, or empty, is a
  :class:`ValueError` naming the file and its size (a key frame), or a skipped sweep that
  is logged (a previous sweep);
- points with NaN / inf coordinates are dropped, counted in ``num_invalid_points`` and
  logged once per file; a key frame left with 0 points is a :class:`ValueError` naming
  the file (a model cannot detect anything in it, and voxelisation of nothing fails
  far from the cause).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional, Sequence, Union

import numpy as np
from mmengine.logging import print_log

from interlace.core.engine.registry import TRANSFORMS

__all__ = ["read_points_file", "sweep_sensor2lidar", "remove_close", "LoadPointsFromFile",
           "LoadPointsFromMultiSweeps", "LoadAnnotations3D", "TIME_LAG_COLUMN"]

TIME_LAG_COLUMN = 4


def read_points_file(path: Union[str, os.PathLike], load_dim: int = 5) -> np.ndarray:
    """Read a ``.pcd.bin`` of float32 rows (or a ``.npy`` array) as ``(P, load_dim)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty or its size is not a multiple of ``load_dim * 4``
            bytes (a truncated download or a wrong ``load_dim``).
    """
    path = os.fspath(path)
    if path.endswith(".npy"):
        points = np.load(path).astype(np.float32, copy=False)
        if points.ndim != 2 or points.shape[1] != load_dim or points.shape[0] == 0:
            raise ValueError(f"{path}: expected a non-empty (P, {load_dim}) array, got shape "
                             f"{points.shape}")
        return points
    size = os.path.getsize(path)
    row_bytes = load_dim * 4
    if size == 0 or size % row_bytes:
        raise ValueError(
            f"{path}: {size} bytes is not a positive multiple of {row_bytes} "
            f"({load_dim} float32 per point); the file is truncated or load_dim is wrong")
    return np.fromfile(path, dtype=np.float32).reshape(-1, load_dim)


def sweep_sensor2lidar(sweep_lidar2ego: np.ndarray, sweep_ego2global: np.ndarray,
                       key_lidar2ego: np.ndarray, key_ego2global: np.ndarray) -> np.ndarray:
    """(4, 4) float64 map from a sweep's LiDAR frame to the key frame's LiDAR frame,
    through the global frame (the ego moved between the two sweeps)."""
    inv = np.linalg.inv
    f64 = np.float64
    return (inv(np.asarray(key_lidar2ego, f64)) @ inv(np.asarray(key_ego2global, f64))
            @ np.asarray(sweep_ego2global, f64) @ np.asarray(sweep_lidar2ego, f64))


def _use_dims(use_dim: Union[int, Sequence[int]], load_dim: int) -> list[int]:
    dims = list(range(use_dim)) if isinstance(use_dim, int) else [int(d) for d in use_dim]
    if not dims or max(dims) >= load_dim or min(dims) < 0:
        raise ValueError(f"use_dim {use_dim} must index the {load_dim} loaded columns")
    return dims


class _PointReader:
    """Shared reading logic: file -> finite ``(P, load_dim)`` float32, logging bad rows."""

    def __init__(self, load_dim: int) -> None:
        self.load_dim = load_dim
        self._warned: set[str] = set()

    def read(self, path: str) -> tuple[np.ndarray, int]:
        points = read_points_file(path, self.load_dim)
        finite = np.isfinite(points[:, :3]).all(axis=1)
        invalid = int(points.shape[0] - finite.sum())
        if invalid:
            # Once per file and reader: a bad file is read every epoch.
            if path not in self._warned:
                self._warned.add(path)
                print_log(f"{path}: dropped {invalid} of {points.shape[0]} points with "
                          f"NaN/inf coordinates", logger="current", level=logging.WARNING)
            points = points[finite]
        return points, invalid


@TRANSFORMS.register_module()
class LoadPointsFromFile:
    """Load the key frame's points from ``results['lidar_points']['lidar_path']``.

    Args:
        coord_type: only ``'LIDAR'`` (kept for mmdet3d config compatibility).
        load_dim: float32 values per point in the file (5 for nuScenes).
        use_dim: columns kept (an int n keeps the first n).

    The time-lag column (4) of the key frame is set to 0, so the output is ready for
    :class:`LoadPointsFromMultiSweeps` (nuScenes stores the ring index there).
    """

    def __init__(self, coord_type: str = "LIDAR", load_dim: int = 5,
                 use_dim: Union[int, Sequence[int]] = 5) -> None:
        if coord_type != "LIDAR":
            raise ValueError(f"coord_type {coord_type!r}: only 'LIDAR' points are supported")
        self.coord_type = coord_type
        self.load_dim = load_dim
        self.use_dim = _use_dims(use_dim, load_dim)
        self._reader = _PointReader(load_dim)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """Adds ``points`` (P, len(use_dim)) float32 and ``num_invalid_points`` (int).

        Reads ``results['lidar_points']['lidar_path']``.
        """
        try:
            path = results["lidar_points"]["lidar_path"]
        except (KeyError, TypeError) as error:
            raise KeyError(f"LoadPointsFromFile: results has no lidar_points.lidar_path "
                           f"(sample {results.get('token', results.get('sample_idx'))})") from error
        points, invalid = self._reader.read(os.fspath(path))
        if points.shape[0] == 0:
            raise ValueError(f"{path}: the point cloud has 0 points with finite coordinates "
                             f"({invalid} NaN / inf dropped)")
        if self.load_dim > TIME_LAG_COLUMN:
            points[:, TIME_LAG_COLUMN] = 0.0
        results["points"] = np.ascontiguousarray(points[:, self.use_dim])
        results["num_invalid_points"] = invalid
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(coord_type={self.coord_type!r}, "
                f"load_dim={self.load_dim}, use_dim={self.use_dim})")


def remove_close(points: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """Drop points with ``|x| < radius`` and ``|y| < radius`` (a square, as mmdet3d):
    returns of the ego vehicle's own roof in a sweep's sensor frame."""
    close = (np.abs(points[:, 0]) < radius) & (np.abs(points[:, 1]) < radius)
    return points[~close]


@TRANSFORMS.register_module()
class LoadPointsFromMultiSweeps:
    """Merge previous LiDAR sweeps into the key frame's points.

    Args:
        sweeps_num: how many sweeps to merge (10 in nuScenes configs).
        load_dim: float32 values per point in the sweep files.
        use_dim: columns kept after merging (the input ``points`` must already have them).
        pad_empty_sweeps: when the sample has no sweeps at all, repeat the key frame
            (without its close points) ``sweeps_num`` times, as mmdet3d.
        remove_close: drop each sweep's points within 1 m of its sensor (|x|, |y| < 1).
        test_mode: take the newest ``sweeps_num`` sweeps; in training a random subset of
            ``sweeps_num`` is drawn when more are available (mmdet3d's behaviour).

    Each sweep's points go through ``sensor2lidar`` (sweep sensor -> key LiDAR) and get the
    sweep's ``time_lag`` (or ``timestamp`` difference) in column 4. A missing or unreadable
    sweep file is skipped and logged; ``num_sweeps_used`` counts the sweeps merged.
    """

    def __init__(self, sweeps_num: int = 10, load_dim: int = 5,
                 use_dim: Union[int, Sequence[int]] = 5, pad_empty_sweeps: bool = False,
                 remove_close: bool = True, test_mode: bool = False) -> None:
        self.sweeps_num = sweeps_num
        self.load_dim = load_dim
        self.use_dim = _use_dims(use_dim, load_dim)
        if TIME_LAG_COLUMN >= load_dim:
            raise ValueError(f"load_dim {load_dim}: sweeps need a time-lag column "
                             f"(index {TIME_LAG_COLUMN})")
        self.pad_empty_sweeps = pad_empty_sweeps
        self.remove_close = remove_close
        self.test_mode = test_mode
        self._reader = _PointReader(load_dim)

    def _choose(self, num_available: int) -> np.ndarray:
        if num_available <= self.sweeps_num:
            return np.arange(num_available)
        if self.test_mode:
            return np.arange(self.sweeps_num)  # newest first in the info file
        return np.random.choice(num_available, self.sweeps_num, replace=False)

    def _load_sweep(self, sweep: dict[str, Any], key_timestamp: Optional[float]
                    ) -> Optional[tuple[np.ndarray, int]]:
        path = os.fspath(sweep["lidar_points"]["lidar_path"])
        try:
            points, invalid = self._reader.read(path)
        except (OSError, ValueError) as error:
            print_log(f"{path}: sweep skipped ({error})", logger="current",
                      level=logging.WARNING)
            return None
        if self.remove_close:
            points = remove_close(points)
        # float32 as mmdet3d: ~5 um at 50 m, and a 34k-point sweep stays cheap.
        sensor2lidar = np.asarray(sweep["sensor2lidar"], dtype=np.float64).astype(np.float32)
        points[:, :3] = points[:, :3] @ sensor2lidar[:3, :3].T + sensor2lidar[:3, 3]
        if "time_lag" in sweep:
            lag = float(sweep["time_lag"])
        elif key_timestamp is not None and "timestamp" in sweep:
            lag = float(key_timestamp) - float(sweep["timestamp"])
        else:
            raise KeyError(f"{path}: sweep has neither time_lag nor timestamp")
        points[:, TIME_LAG_COLUMN] = lag
        return points[:, self.use_dim], invalid

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``points`` (P, C) -> ``points`` (P + sum of sweep sizes, C) float32.

        Adds ``num_sweeps_used`` (int); ``num_invalid_points`` grows by the sweeps' count.
        """
        points = results["points"]
        if points.shape[1] != len(self.use_dim):
            raise ValueError(f"LoadPointsFromMultiSweeps: points have {points.shape[1]} "
                             f"columns, use_dim {self.use_dim} expects {len(self.use_dim)}")
        if TIME_LAG_COLUMN in self.use_dim:  # the key frame is the reference time
            points[:, self.use_dim.index(TIME_LAG_COLUMN)] = 0.0
        sweeps = results.get("lidar_sweeps") or []
        parts = [points]
        used = 0
        invalid_total = int(results.get("num_invalid_points", 0))
        if not sweeps and self.pad_empty_sweeps:
            padding = remove_close(points) if self.remove_close else points
            parts.extend([padding] * self.sweeps_num)
        for index in self._choose(len(sweeps)):
            loaded = self._load_sweep(sweeps[int(index)], results.get("timestamp"))
            if loaded is None:
                continue
            parts.append(loaded[0].astype(np.float32, copy=False))
            invalid_total += loaded[1]
            used += 1
        results["points"] = np.concatenate(parts, axis=0)
        results["num_sweeps_used"] = used
        results["num_invalid_points"] = invalid_total
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(sweeps_num={self.sweeps_num}, "
                f"remove_close={self.remove_close}, test_mode={self.test_mode})")


@TRANSFORMS.register_module()
class LoadAnnotations3D:
    """Copy ``ann_info``'s boxes and labels to the top level, as mmdet3d.

    Args:
        with_bbox_3d: copy ``gt_bboxes_3d`` (N, 9) float32.
        with_label_3d: copy ``gt_labels_3d`` (N,) int64.
        with_attr_label: copy ``attr_labels`` (N,) int64.

    A sample without ``ann_info`` (test time) gets empty arrays.
    """

    def __init__(self, with_bbox_3d: bool = True, with_label_3d: bool = True,
                 with_attr_label: bool = False) -> None:
        self.with_bbox_3d = with_bbox_3d
        self.with_label_3d = with_label_3d
        self.with_attr_label = with_attr_label

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """Adds ``gt_bboxes_3d`` (N, 9), ``gt_labels_3d`` (N,), optionally ``attr_labels``."""
        ann = results.get("ann_info") or {}
        if self.with_bbox_3d:
            boxes = np.asarray(ann.get("gt_bboxes_3d", np.zeros((0, 9))), dtype=np.float32)
            results["gt_bboxes_3d"] = boxes.reshape(-1, boxes.shape[-1] if boxes.size else 9)
        if self.with_label_3d:
            results["gt_labels_3d"] = np.asarray(ann.get("gt_labels_3d", []), dtype=np.int64)
        if self.with_attr_label:
            results["attr_labels"] = np.asarray(ann.get("attr_labels", []), dtype=np.int64)
        return results
