"""`NuScenesDataset`: nuScenes samples from an mmdet3d v1.x info file, for the driving pipeline.

What a sample is before the pipeline (the contract the driving transforms read)
-------------------------------------------------------------------------------
``parse_data_info`` turns one info-file entry (layout in :mod:`.info_creation`) into a dict
with exactly these keys (all matrices np.float64 arrays mapping column vectors, times in
seconds; the frame conventions are those of :mod:`.nuscenes_names`):

* ``token``, ``sample_idx`` (int, position in the dataset), ``timestamp``, ``scene_token``
  (None for mmdet3d's own files, which do not store it), ``ego2global`` (4, 4).
* ``lidar_points``: ``lidar_path`` (absolute), ``num_pts_feats`` (5), ``lidar2ego`` (4, 4).
* ``lidar_sweeps``: list, newest first; each has ``lidar_points.lidar_path`` (absolute),
  ``lidar_points.lidar2ego`` / ``lidar2sensor``, ``ego2global``, ``timestamp``,
  ``sample_data_token`` and two derived keys: ``sensor2lidar`` (4, 4), sweep sensor frame ->
  key LiDAR frame (``p_key = sensor2lidar @ p_sweep``), and ``time_lag`` = key timestamp -
  sweep timestamp (s, > 0).
* ``images``: ``{CAM_*: {img_path (absolute), cam2img (3, 3), lidar2cam (4, 4), cam2ego
  (4, 4), lidar2img (4, 4) = cam2img padded to 4x4 @ lidar2cam, timestamp,
  sample_data_token}}`` in the info file's camera order (``metainfo['cameras']``, CAMERAS
  by default), or in the order of the dataset's ``cameras`` argument; ``{}`` for a
  LiDAR-only file or ``cameras=[]``.
* ``ann_info`` (training; ``eval_ann_info`` instead in ``test_mode`` with
  ``load_eval_anns``; neither for v1.0-test files, which have no ``instances``):
  ``gt_bboxes_3d`` (N, 9) float32 ``[x, y, z, l, w, h, yaw, vx, vy]`` with (x, y, z) the
  geometric centre in the key LiDAR frame, ``gt_labels_3d`` (N,) int64 (index in
  ``metainfo['classes']``), ``gt_names`` (list of N str), ``attr_labels`` (N,) int64 (index
  in ATTRIBUTES, -1 if none), ``num_lidar_pts`` (N,) int64. A sample without boxes gets
  (0, 9) / (0,) arrays. Boxes are kept when ``bbox_3d_isvalid`` (``use_valid_flag``) or
  else ``num_lidar_pts > 0``, as mmdet3d; boxes whose class is not in
  ``metainfo['classes']`` are dropped here (mmdet3d keeps them as label -1 for a later
  ``ObjectNameFilter``). NaN velocities become 0, as mmdet3d does.
* ``prepare_data`` adds ``box_type_3d='LiDAR'`` and ``box_mode_3d=0`` (the value of
  mmdet3d's ``Box3DMode.LIDAR``; mmdet3d is optional here) before the pipeline.
* ``prepare_data`` refuses a sample whose calibration is unusable (a pose, intrinsic or
  extrinsic matrix holding NaN / inf, or singular) with an :class:`InfoFileError` naming
  the info file, the sample, the sensor and the matrix.

The transforms then produce ``points`` (N, 5) ``[x, y, z, intensity, time_lag]`` in the key
LiDAR frame, ``img`` (list of V HxWx3, V the number of cameras; absent without cameras),
``lidar2img`` (V, 4, 4), ``img_aug_matrix`` and ``lidar_aug_matrix``.

Labels: an info file's ``bbox_label_3d`` indexes its own ``metainfo['categories']`` (ours
use CLASSES; mmdet3d's files use mmdet3d's order car, truck, trailer, ...), so labels are
mapped by class name into ``metainfo['classes']``, which may be a subset of CLASSES.
"""
from __future__ import annotations

import logging
import os.path as osp
from collections import Counter
from pathlib import PurePath
from typing import Any, Callable, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from interlace.core.engine.registry import DATASETS

from .info_files import InfoFileError, load_info_file, sweep_to_key_lidar
from .nuscenes_names import CAMERAS, CLASSES

BOX_TYPE_3D = "LiDAR"
BOX_MODE_3D = 0  # mmdet3d's Box3DMode.LIDAR (an IntEnum, so it compares equal)
DEFAULT_DATA_PREFIX: dict[str, str] = dict(
    pts="samples/LIDAR_TOP", sweeps="sweeps/LIDAR_TOP",
    **{camera: f"samples/{camera}" for camera in CAMERAS})
_MATRIX_KEYS = ("ego2global", "lidar2ego", "lidar2sensor", "cam2img", "cam2ego", "lidar2cam")


def _as_matrices(record: dict) -> dict:
    """A shallow copy of `record` with its matrix entries as float64 arrays."""
    out = dict(record)
    for key in _MATRIX_KEYS:
        if key in out:
            out[key] = np.asarray(out[key], dtype=np.float64)
    return out


def _matrix_problem(name: str, matrix: np.ndarray) -> Optional[str]:
    """Why calibration `matrix` cannot be used (None if it can): a NaN / inf entry, or
    singular (a pose or an intrinsic matrix that maps space onto a plane). Intrinsics are
    judged on their 3 x 3 block, since a 3 x 3 stored padded is singular in 4 x 4."""
    if not np.isfinite(matrix).all():
        return f"{name} holds NaN or inf: {matrix.tolist()}"
    square = matrix[:3, :3] if name == "cam2img" else matrix
    if square.ndim != 2 or square.shape[0] != square.shape[1] \
            or np.linalg.matrix_rank(square) < square.shape[0]:
        return f"{name} is singular: {matrix.tolist()}"
    return None


def calibration_problem(info: dict) -> Optional[str]:
    """The first unusable calibration matrix of a parsed sample (key frame poses, each
    camera's intrinsics and extrinsics, each sweep's poses), as ``where: why``."""
    places = [("sample", info), ("lidar_points", info.get("lidar_points", {}))]
    places += [(f"camera {camera}", image) for camera, image in info.get("images", {}).items()]
    places += [(f"sweep {i}", sweep) for i, sweep in enumerate(info.get("lidar_sweeps", []))]
    places += [(f"sweep {i} lidar_points", sweep.get("lidar_points", {}))
               for i, sweep in enumerate(info.get("lidar_sweeps", []))]
    for where, record in places:
        for key in _MATRIX_KEYS + ("lidar2img", "sensor2lidar"):
            if key in record:
                problem = _matrix_problem(key, np.asarray(record[key], dtype=np.float64))
                if problem:
                    return f"{where}: {problem}"
    return None


def empty_ann_info() -> dict[str, Any]:
    """``ann_info`` of a sample without (kept) boxes."""
    return dict(gt_bboxes_3d=np.zeros((0, 9), np.float32), gt_labels_3d=np.zeros(0, np.int64),
                gt_names=[], attr_labels=np.zeros(0, np.int64),
                num_lidar_pts=np.zeros(0, np.int64))


@DATASETS.register_module()
class NuScenesDataset(BaseDataset):
    """nuScenes 3D detection samples (LiDAR + any number of cameras) from a v1.x info file.

    Args:
        ann_file: info file (``nuscenes_infos_train.pkl``), relative to `data_root` or absolute.
        data_root: nuScenes root; `ann_file` and `data_prefix` are joined to it.
        data_prefix: folders of the files the info file names: ``pts`` (key LiDAR),
            ``sweeps``, one per camera (or ``img`` for all cameras).
        pipeline: transforms (dicts built from TRANSFORMS, or callables).
        modality: ``dict(use_lidar, use_camera)``, recorded in ``metainfo['modality']`` for
            the pipeline and exporters; paths of both are resolved either way.
        test_mode: no ``ann_info``; no refetch of samples.
        filter_empty_gt: in training, a sample without kept boxes is replaced by another.
        use_valid_flag: keep boxes by ``bbox_3d_isvalid`` instead of ``num_lidar_pts > 0``.
        version: if given, the info file's ``metainfo['version']`` must equal it.
        metainfo: ``dict(classes=...)`` to train on a subset of CLASSES (labels remapped).
        load_eval_anns: in ``test_mode``, still parse annotations into ``eval_ann_info``.
        box_type_3d: only ``'LiDAR'``.
        cameras: the camera views of each sample, in this order (a subset of the info
            file's); None keeps every camera the file has, ``[]`` none (LiDAR-only). A
            sample lacking a listed camera is an :class:`InfoFileError` naming it. Images
            of a camera without a ``data_prefix`` entry are read from
            ``samples/<camera>/`` (the nuScenes layout).
    """

    METAINFO = dict(classes=CLASSES)

    def __init__(self, ann_file: str, data_root: str = "", *,
                 data_prefix: Optional[dict] = None,
                 pipeline: Sequence[dict | Callable] = (),
                 modality: Optional[dict] = None, test_mode: bool = False,
                 filter_empty_gt: bool = True, use_valid_flag: bool = False,
                 version: Optional[str] = None, metainfo: Optional[dict] = None,
                 load_eval_anns: bool = True, box_type_3d: str = BOX_TYPE_3D,
                 cameras: Optional[Sequence[str]] = None, **kwargs: Any) -> None:
        if box_type_3d.lower() != "lidar":
            raise ValueError(f"NuScenesDataset supports box_type_3d='LiDAR' only, got "
                             f"{box_type_3d!r}")
        self.modality = {"use_lidar": True, "use_camera": True, **(modality or {})}
        if not (self.modality["use_lidar"] or self.modality["use_camera"]):
            raise ValueError("modality must use the LiDAR, the cameras or both")
        self.filter_empty_gt = filter_empty_gt
        self.use_valid_flag = use_valid_flag
        self.version = version
        self.load_eval_anns = load_eval_anns
        self.cameras = None if cameras is None else tuple(str(c) for c in cameras)
        self._label_of_file_label: dict[int, int] = {}
        if data_root and "://" not in data_root:
            data_root = osp.abspath(data_root)  # paths handed to the pipeline are absolute
        prefix = dict(DEFAULT_DATA_PREFIX)
        prefix.update(data_prefix or {})
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=prefix, pipeline=list(pipeline), test_mode=test_mode,
                         **kwargs)
        self._metainfo["modality"] = dict(self.modality)
        if self.cameras is not None:
            self._metainfo["cameras"] = list(self.cameras)
        self._metainfo["box_type_3d"] = BOX_TYPE_3D

    # -- loading ---------------------------------------------------------------------------
    def load_data_list(self) -> list[dict]:
        file_metainfo, raw_list = load_info_file(self.ann_file, self.version)
        for key, value in file_metainfo.items():
            self._metainfo.setdefault(key, value)
        self._label_of_file_label = self._label_mapping(file_metainfo["categories"])
        data_list = [self.parse_data_info(raw) for raw in raw_list]
        counts = Counter(name for info in data_list
                         for name in (info.get("ann_info") or info.get("eval_ann_info")
                                      or {"gt_names": []})["gt_names"])
        print_log(f"NuScenesDataset {self.ann_file}: {len(data_list)} samples; kept boxes "
                  f"per class {dict(counts)}", logger="current", level=logging.INFO)
        return data_list

    def _label_mapping(self, categories: dict[str, int]) -> dict[int, int]:
        """File label -> index in ``metainfo['classes']`` (-1: not trained on)."""
        classes = list(self._metainfo["classes"])
        unknown = [name for name in classes if name not in categories and name not in CLASSES]
        if unknown:
            raise InfoFileError(f"{self.ann_file}: metainfo classes {unknown} are neither "
                                f"nuScenes detection classes nor categories of the file")
        return {index: classes.index(name) if name in classes else -1
                for name, index in categories.items() if index >= 0}

    def parse_data_info(self, info: dict) -> dict:
        """One info-file entry -> the sample dict described in the module docstring."""
        info = _as_matrices(info)
        info.setdefault("scene_token", None)
        info["lidar_points"] = self._parse_lidar_points(info["lidar_points"], "pts")
        sweeps = []
        for raw_sweep in info.get("lidar_sweeps", []):
            sweep = _as_matrices(raw_sweep)
            folder = "pts" if "samples" in PurePath(
                raw_sweep["lidar_points"]["lidar_path"]).parts else "sweeps"
            sweep["lidar_points"] = self._parse_lidar_points(raw_sweep["lidar_points"], folder)
            try:
                sweep["sensor2lidar"] = sweep_to_key_lidar(info, raw_sweep)
            except np.linalg.LinAlgError:  # a singular pose: prepare_data names it
                sweep["sensor2lidar"] = np.full((4, 4), np.nan)
            sweep["time_lag"] = float(info["timestamp"] - raw_sweep["timestamp"])
            sweeps.append(sweep)
        info["lidar_sweeps"] = sweeps
        info["images"] = {camera: self._parse_image(camera, image)
                          for camera, image in self._selected_images(info).items()}
        if "instances" in info:
            if not self.test_mode:
                info["ann_info"] = self.parse_ann_info(info["instances"])
            elif self.load_eval_anns:
                info["eval_ann_info"] = self.parse_ann_info(info["instances"])
        return info

    def _selected_images(self, info: dict) -> dict:
        """The sample's ``images`` restricted to (and ordered by) ``cameras``."""
        images = info.get("images") or {}
        if self.cameras is None:
            return images
        absent = [camera for camera in self.cameras if camera not in images]
        if absent:
            raise InfoFileError(f"{self.ann_file}: sample {info.get('token')} has no "
                                f"{absent} image(s); its cameras are {list(images)}")
        return {camera: images[camera] for camera in self.cameras}

    def _parse_lidar_points(self, points: dict, folder: str) -> dict:
        points = _as_matrices(points)
        # mmdet3d's files hold a bare file name for key frames and a root-relative path
        # for sweeps; both resolve against the configured folder.
        name = PurePath(points["lidar_path"]).name
        points["lidar_path"] = osp.join(self.data_prefix.get(folder, ""), name)
        return points

    def _parse_image(self, camera: str, image: dict) -> dict:
        image = _as_matrices(image)
        folder = self.data_prefix.get(camera, self.data_prefix.get("img"))
        if folder is None:  # a camera nuScenes does not have: its nuScenes-layout folder
            folder = osp.join(self.data_root, "samples", camera)
        image["img_path"] = osp.join(folder, PurePath(image["img_path"]).name)
        intrinsics = np.eye(4)
        intrinsics[:3, :3] = image["cam2img"][:3, :3]
        image["lidar2img"] = intrinsics @ image["lidar2cam"]
        return image

    def parse_ann_info(self, instances: list[dict]) -> dict[str, Any]:
        """``instances`` of one sample -> ``ann_info`` (keys and shapes in the module doc)."""
        if not instances:
            return empty_ann_info()
        if self.use_valid_flag:
            keep = np.array([bool(i["bbox_3d_isvalid"]) for i in instances])
        else:
            keep = np.array([i["num_lidar_pts"] > 0 for i in instances])
        labels = np.array([self._label_of_file_label.get(int(i["bbox_label_3d"]), -1)
                           for i in instances], dtype=np.int64)
        keep &= labels >= 0
        if not keep.any():
            return empty_ann_info()
        kept = [inst for inst, k in zip(instances, keep) if k]
        boxes = np.array([inst["bbox_3d"][:7] for inst in kept], dtype=np.float32)
        velocity = np.array([inst["velocity"][:2] for inst in kept], dtype=np.float32)
        velocity[np.isnan(velocity)] = 0.0
        labels = labels[keep]
        classes = self._metainfo["classes"]
        return dict(
            gt_bboxes_3d=np.concatenate([boxes, velocity], axis=1),
            gt_labels_3d=labels,
            gt_names=[classes[label] for label in labels],
            attr_labels=np.array([inst.get("attr_label", -1) for inst in kept], np.int64),
            num_lidar_pts=np.array([inst["num_lidar_pts"] for inst in kept], np.int64))

    # -- access ----------------------------------------------------------------------------
    def get_cat_ids(self, idx: int) -> list[int]:
        """Labels present in sample `idx` (for class-balanced resampling)."""
        info = self.get_data_info(idx)
        annotations = info.get("ann_info") or info.get("eval_ann_info") or empty_ann_info()
        return sorted(set(annotations["gt_labels_3d"].tolist()))

    def prepare_data(self, idx: int) -> Any:
        """The sample through the pipeline; None (mmengine then draws another sample) for
        a training sample without boxes when ``filter_empty_gt``."""
        info = self.get_data_info(idx)
        # Checked per sample, not when the file is parsed: one bad sample must fail alone
        # (batch inference records it and goes on), not the whole data set.
        problem = calibration_problem(info)
        if problem:
            raise InfoFileError(f"{self.ann_file}: sample {info.get('token')}: calibration "
                                f"{problem}")
        info["box_type_3d"] = BOX_TYPE_3D
        info["box_mode_3d"] = BOX_MODE_3D
        if (not self.test_mode and self.filter_empty_gt and "ann_info" in info
                and len(info["ann_info"]["gt_labels_3d"]) == 0):
            return None
        return self.pipeline(info)
