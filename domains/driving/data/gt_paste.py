"""Ground-truth paste ("GT sampling", SECOND / mmdet3d ``ObjectSample``): a database of
the points inside every training box, and a transform that pastes sampled objects into
other scenes where they do not collide with the objects already there.

Database layout (as mmdet3d's ``create_gt_database``, with this project's box convention):

- ``out_dir/<db_name>/<sample_idx>_<class>_<gt_idx>.bin``: float32 rows ``(x, y, z,
  intensity, time_lag)`` of the points inside the box (key frame + ``max_sweeps``
  sweeps), with xyz **relative to the box's geometric centre** (mmdet3d subtracts its
  bottom centre). The time lag is stored (0 for the key frame, the sweep's lag in seconds
  otherwise), as mmdet3d stores it: a moving object's older points trail behind it, and
  that trail is what its velocity label is learned from;
- ``out_dir/<dbinfo_name>``: a pickle ``{class: [info, ...]}`` with ``info = {name, path
  (relative to out_dir), sample_idx, gt_idx, box3d_lidar (9: x, y, z, l, w, h, yaw, vx,
  vy, geometric centre), num_points_in_gt, difficulty, group_id}``.

Every file is written to a temporary name and renamed, so an interrupted run leaves no
half-written file.
"""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.utils import track_iter_progress

from interlace.core.engine.atomic_files import write_bytes_atomic
from interlace.core.engine.registry import TRANSFORMS
from interlace.core.engine.safe_pickle import load_pickle
from interlace.core.ops.box_geometry import points_in_boxes
from interlace.core.ops.rotated_iou import bev_iou_rotated

from .nuscenes_names import CLASSES
from .transforms.loading import (TIME_LAG_COLUMN, LoadPointsFromFile, LoadPointsFromMultiSweeps,
                                 read_points_file, sweep_sensor2lidar)

__all__ = ["create_groundtruth_database", "sample_for_loading", "DataBaseSampler",
           "ObjectSample"]

PathLike = Union[str, os.PathLike]


def _resolve(path: PathLike, data_root: Path, default_dir: str) -> Path:
    """An info-file path: absolute, relative to data_root, or a bare file name under
    ``data_root/default_dir`` (mmdet3d v1.x stores key frames by name only)."""
    p = Path(path)
    if p.is_absolute():
        return p
    if len(p.parts) > 1:
        return data_root / p
    return data_root / default_dir / p


def sample_for_loading(info: dict[str, Any], data_root: PathLike) -> dict[str, Any]:
    """The per-sample dict :class:`LoadPointsFromFile` / :class:`LoadPointsFromMultiSweeps`
    read, built from one ``data_list`` entry of an mmdet3d v1.x info file.

    Sweeps get ``sensor2lidar`` through the global frame (sweep lidar2ego, ego2global,
    then the key frame's inverses) and ``time_lag`` = key timestamp - sweep timestamp (s).
    """
    root = Path(data_root)
    key_points = info["lidar_points"]
    lidar2ego = np.asarray(key_points["lidar2ego"], np.float64)
    ego2global = np.asarray(info["ego2global"], np.float64)
    sweeps = []
    for sweep in info.get("lidar_sweeps") or []:
        points = sweep["lidar_points"]
        if "lidar2ego" in points:
            s2l = sweep_sensor2lidar(points["lidar2ego"], sweep["ego2global"], lidar2ego,
                                     ego2global)
        else:  # older infos carry lidar2sensor (key lidar -> sweep sensor) instead
            s2l = np.linalg.inv(np.asarray(points["lidar2sensor"], np.float64))
        sweeps.append(dict(
            lidar_points=dict(lidar_path=str(_resolve(points["lidar_path"], root,
                                                      "sweeps/LIDAR_TOP"))),
            sensor2lidar=s2l, time_lag=float(info["timestamp"]) - float(sweep["timestamp"])))
    return dict(sample_idx=info.get("sample_idx"), token=info.get("token"),
                timestamp=info["timestamp"],
                lidar_points=dict(lidar_path=str(_resolve(key_points["lidar_path"], root,
                                                          "samples/LIDAR_TOP")),
                                  lidar2ego=lidar2ego),
                lidar_sweeps=sweeps)


def _class_names(metainfo: dict[str, Any]) -> list[str]:
    categories = metainfo.get("categories") or metainfo.get("classes")
    if isinstance(categories, dict):
        return [name for name, _ in sorted(categories.items(), key=lambda kv: kv[1])]
    return list(categories) if categories else list(CLASSES)


def _instances(info: dict[str, Any], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 9) boxes (NaN velocity -> 0) and (N,) labels of the valid, known-class objects."""
    boxes, labels = [], []
    for instance in info.get("instances") or []:
        label = int(instance["bbox_label_3d"])
        if not 0 <= label < num_classes or not instance.get("bbox_3d_isvalid", True):
            continue
        velocity = np.nan_to_num(np.asarray(instance.get("velocity", (0.0, 0.0)), np.float64))
        boxes.append(np.concatenate([np.asarray(instance["bbox_3d"], np.float64)[:7],
                                     velocity[:2]]))
        labels.append(label)
    return (np.asarray(boxes, np.float32).reshape(-1, 9), np.asarray(labels, np.int64))


def create_groundtruth_database(info_path: PathLike, data_root: PathLike, out_dir: PathLike, *,
                                max_sweeps: int = 10, db_name: str = "nuscenes_gt_database",
                                dbinfo_name: str = "nuscenes_dbinfos_train.pkl") -> dict:
    """Cut the points of every ground-truth box of an info file into a database.

    Args:
        info_path: mmdet3d v1.x info pickle ``{'metainfo', 'data_list'}``.
        data_root: nuScenes root (``samples/``, ``sweeps/``).
        out_dir: where ``<db_name>/`` and ``<dbinfo_name>`` are written (usually data_root).
        max_sweeps: sweeps merged with the key frame (padded with the key frame when a
            sample has none, as mmdet3d).

    Returns:
        The dbinfos ``{class: [info, ...]}`` also written to ``out_dir/<dbinfo_name>``.
        A sample whose key LiDAR file is missing or malformed is logged and skipped.
    """
    infos = load_pickle(info_path)
    if not isinstance(infos, dict) or "data_list" not in infos:
        raise ValueError(f"{info_path}: not an mmdet3d v1.x info file (expected a dict with "
                         f"'metainfo' and 'data_list')")
    classes = _class_names(infos.get("metainfo") or {})
    out = Path(out_dir)
    (out / db_name).mkdir(parents=True, exist_ok=True)
    load_key = LoadPointsFromFile(load_dim=5, use_dim=5)
    load_sweeps = LoadPointsFromMultiSweeps(sweeps_num=max_sweeps, load_dim=5, use_dim=5,
                                            pad_empty_sweeps=True, remove_close=True,
                                            test_mode=True)
    dbinfos: dict[str, list[dict]] = {}
    group_id = 0
    data_list = infos["data_list"]
    for info in track_iter_progress(data_list) if data_list else []:
        sample = sample_for_loading(info, data_root)
        try:
            points = load_sweeps(load_key(sample))["points"]
        except (OSError, ValueError) as error:
            print_log(f"{info_path}: sample {sample['sample_idx']} skipped ({error})",
                      logger="current", level=logging.WARNING)
            continue
        boxes, labels = _instances(info, len(classes))
        if not len(boxes):
            continue
        inside = points_in_boxes(torch.from_numpy(points[:, :3]),
                                 torch.from_numpy(boxes).double()).numpy()
        for gt_idx, (box, label) in enumerate(zip(boxes, labels)):
            name = classes[label]
            object_points = points[inside[:, gt_idx]].copy()
            object_points[:, :3] -= box[:3]
            filename = f"{sample['sample_idx']}_{name}_{gt_idx}.bin"
            write_bytes_atomic(out / db_name / filename,
                               object_points.astype(np.float32).tobytes(), fsync=False)
            dbinfos.setdefault(name, []).append(dict(
                name=name, path=f"{db_name}/{filename}", sample_idx=sample["sample_idx"],
                gt_idx=gt_idx, box3d_lidar=box.copy(), num_points_in_gt=len(object_points),
                difficulty=0, group_id=group_id))
            group_id += 1
    write_bytes_atomic(out / dbinfo_name, pickle.dumps(dbinfos))
    for name, entries in dbinfos.items():
        print_log(f"GT database: {len(entries)} {name}", logger="current")
    return dbinfos


class _ClassSampler:
    """Draws infos of one class without replacement, reshuffling when exhausted
    (mmdet3d's ``BatchSampler``)."""

    def __init__(self, infos: list[dict]) -> None:
        self.infos = infos
        self._order = np.random.permutation(len(infos))
        self._next = 0

    def sample(self, num: int) -> list[dict]:
        if self._next + num >= len(self.infos):
            chosen = self._order[self._next:]
            self._order, self._next = np.random.permutation(len(self.infos)), 0
        else:
            chosen = self._order[self._next:self._next + num]
            self._next += num
        return [self.infos[i] for i in chosen]


class DataBaseSampler:
    """Samples database objects for :class:`ObjectSample`.

    Args:
        info_path: the dbinfos pickle (absolute, or relative to ``data_root``).
        data_root: root the dbinfos' ``path`` entries are relative to.
        rate: fraction of each group's missing count to sample.
        prepare: ``filter_by_min_points={class: n}`` keeps objects with at least n points;
            ``filter_by_difficulty=[d, ...]`` drops those difficulties.
        sample_groups: ``{class: max objects of that class per scene}``.
        classes: label order (default nuScenes' CLASSES).
        zero_time_lag: give pasted points time lag 0 (they join the key frame). Off by
            default, as in mmdet3d: the points keep the lags stored in the database, so a
            pasted object's trail agrees with its velocity label (zeroed lags would teach
            that a moving object's smeared points belong to one instant). A database
            built by an earlier version loads unchanged: its files always held the lags.
        points_loader: mmdet3d's ``dict(type='LoadPointsFromFile', load_dim=5,
            use_dim=...)``; only ``load_dim`` / ``use_dim`` are read (default 5 / 5).
    """

    def __init__(self, info_path: PathLike, data_root: PathLike, rate: float = 1.0,
                 prepare: Optional[dict] = None, sample_groups: Optional[dict] = None,
                 classes: Sequence[str] = CLASSES, zero_time_lag: bool = False,
                 points_loader: Optional[dict] = None) -> None:
        loader = points_loader or {}
        self.load_dim = int(loader.get("load_dim", 5))
        use_dim = loader.get("use_dim", self.load_dim)
        self.use_dim = list(range(use_dim)) if isinstance(use_dim, int) else list(use_dim)
        self.data_root = Path(data_root)
        path = Path(info_path)
        path = path if path.is_absolute() or path.exists() else self.data_root / path
        dbinfos: dict[str, list[dict]] = load_pickle(path)
        self.classes = list(classes)
        self.rate = rate
        self.zero_time_lag = zero_time_lag
        prepare = prepare or {}
        min_points = prepare.get("filter_by_min_points", {})
        bad_difficulty = set(prepare.get("filter_by_difficulty", []))
        self.sample_groups = dict(sample_groups or {})
        unknown = set(self.sample_groups) - set(self.classes)
        if unknown:
            raise ValueError(f"sample_groups names classes {sorted(unknown)} not in {self.classes}")
        self.samplers: dict[str, _ClassSampler] = {}
        for name in self.sample_groups:
            kept = [i for i in dbinfos.get(name, [])
                    if i["num_points_in_gt"] >= min_points.get(name, 0)
                    and i.get("difficulty", 0) not in bad_difficulty]
            if kept:
                self.samplers[name] = _ClassSampler(kept)

    def _reject_collisions(self, candidates: list[dict], avoid: np.ndarray) -> list[dict]:
        """Greedy: keep a candidate if its BEV footprint overlaps none of ``avoid`` (N, 7+)
        nor any candidate kept before it."""
        boxes = torch.from_numpy(np.stack([c["box3d_lidar"] for c in candidates])).double()
        existing = torch.from_numpy(np.asarray(avoid, np.float64).reshape(-1, boxes.shape[1]))
        with_gt = (bev_iou_rotated(boxes, existing) > 0).any(dim=1) if len(existing) \
            else torch.zeros(len(boxes), dtype=torch.bool)
        between = bev_iou_rotated(boxes, boxes) > 0
        kept: list[int] = []
        for i in range(len(candidates)):
            if not with_gt[i] and not any(bool(between[i, j]) for j in kept):
                kept.append(i)
        return [candidates[i] for i in kept]

    def sample_all(self, gt_bboxes: np.ndarray, gt_labels: np.ndarray) -> Optional[dict]:
        """Sample objects for a scene with ``gt_bboxes`` (N, 9) / ``gt_labels`` (N,).

        Returns None if nothing was sampled, else ``{'gt_bboxes_3d': (M, 9) float32,
        'gt_labels_3d': (M,) int64, 'gt_names': M names, 'num_points': (M,),
        'points': (Q, 5) float32 in the scene frame}``.
        """
        avoid = np.asarray(gt_bboxes, np.float64).reshape(-1, 9)
        sampled: list[dict] = []
        for name, max_num in self.sample_groups.items():
            label = self.classes.index(name)
            missing = int(max_num - np.sum(np.asarray(gt_labels) == label))
            num = int(np.round(self.rate * missing))
            if num <= 0 or name not in self.samplers:
                continue
            accepted = self._reject_collisions(self.samplers[name].sample(num), avoid)
            if accepted:
                sampled += accepted
                avoid = np.concatenate([avoid, np.stack([a["box3d_lidar"] for a in accepted])])
        if not sampled:
            return None
        pieces = []
        for info in sampled:
            points = read_points_file(self.data_root / info["path"], load_dim=self.load_dim)
            points[:, :3] += np.asarray(info["box3d_lidar"][:3], np.float32)
            if self.zero_time_lag and self.load_dim > TIME_LAG_COLUMN:
                points[:, TIME_LAG_COLUMN] = 0.0
            pieces.append(points[:, self.use_dim])
        return dict(gt_bboxes_3d=np.stack([s["box3d_lidar"] for s in sampled]).astype(np.float32),
                    gt_labels_3d=np.array([self.classes.index(s["name"]) for s in sampled],
                                          np.int64),
                    gt_names=[s["name"] for s in sampled],
                    num_points=np.array([s["num_points_in_gt"] for s in sampled], np.int64),
                    points=np.concatenate(pieces))


@TRANSFORMS.register_module()
class ObjectSample:
    """Paste database objects into the scene (before the global augmentation).

    Args:
        db_sampler: a :class:`DataBaseSampler` or the dict of its arguments.
        sample_2d: pasting image patches too is not supported (False only).

    The scene's points inside the pasted boxes are removed (they would be occluded by the
    pasted object), then the pasted points are put first, as mmdet3d.
    """

    def __init__(self, db_sampler: Union[dict, DataBaseSampler], sample_2d: bool = False) -> None:
        if sample_2d:
            raise ValueError("ObjectSample(sample_2d=True): pasting camera patches is not "
                             "supported; the cameras keep the original scene")
        if isinstance(db_sampler, dict):
            db_sampler = DataBaseSampler(**{k: v for k, v in db_sampler.items() if k != "type"})
        self.db_sampler = db_sampler

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``points`` (P, 5), ``gt_bboxes_3d`` (N, 9), ``gt_labels_3d`` (N,) ->
        (P', 5), (N + M, 9), (N + M,); ``gt_names`` / ``num_lidar_pts`` / ``attr_labels``
        (-1) extended when present."""
        boxes = np.asarray(results["gt_bboxes_3d"], np.float32).reshape(-1, 9)
        labels = np.asarray(results["gt_labels_3d"], np.int64)
        sampled = self.db_sampler.sample_all(boxes, labels)
        if sampled is None:
            return results
        points = results["points"]
        if points.shape[1] != sampled["points"].shape[1]:
            raise ValueError(f"ObjectSample: scene points have {points.shape[1]} columns, the "
                             f"database has {sampled['points'].shape[1]}")
        covered = points_in_boxes(torch.from_numpy(points[:, :3]),
                                  torch.from_numpy(sampled["gt_bboxes_3d"]).double())
        results["points"] = np.concatenate([sampled["points"],
                                            points[~covered.any(dim=1).numpy()]])
        count = len(sampled["gt_labels_3d"])
        results["gt_bboxes_3d"] = np.concatenate([boxes, sampled["gt_bboxes_3d"]])
        results["gt_labels_3d"] = np.concatenate([labels, sampled["gt_labels_3d"]])
        if "gt_names" in results:
            results["gt_names"] = list(results["gt_names"]) + sampled["gt_names"]
        if "num_lidar_pts" in results:
            results["num_lidar_pts"] = np.concatenate([results["num_lidar_pts"],
                                                       sampled["num_points"]])
        if "attr_labels" in results:
            results["attr_labels"] = np.concatenate([results["attr_labels"],
                                                     np.full(count, -1, np.int64)])
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sample_groups={self.db_sampler.sample_groups})"
