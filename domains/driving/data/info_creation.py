"""Build nuScenes info files in the mmdet3d v1.x layout, reading the tables with nuscenes-devkit.

One sample of ``data_list`` (keys as mmdet3d v1.x's ``update_infos_to_v2.py`` writes them;
matrices are 4x4 nested lists mapping column vectors, timestamps in seconds):

* ``sample_idx`` (position in the file), ``token`` (sample token), ``timestamp``,
  ``ego2global`` (ego pose of the key LiDAR sample_data), and our extra ``scene_token``.
* ``lidar_points``: ``num_pts_feats`` 5, ``lidar_path`` (bare file name, as mmdet3d: the
  dataset joins ``data_prefix['pts']``), ``lidar2ego``.
* ``lidar_sweeps``: up to ``max_sweeps`` previous LiDAR sample_data, **newest first**, each
  ``{'lidar_points': {lidar_path, lidar2ego, lidar2sensor}, 'ego2global', 'timestamp',
  'sample_data_token'}``. ``lidar_path`` is the devkit's ``filename`` (``sweeps/LIDAR_TOP/..``
  or ``samples/LIDAR_TOP/..`` when a sweep is the previous key frame); ``lidar2sensor`` maps
  the key LiDAR frame into the sweep's sensor frame. We store no ``sensor2lidar_*`` (v0.x)
  keys: the dataset derives the sweep -> key-LiDAR transform and the time lag from these
  fields (:func:`.info_files.sweep_to_key_lidar`), so mmdet3d's own files work as well.
* ``images``: for each camera of the ``cameras`` list (default the six nuScenes cameras,
  in mmdet3d's order; empty for a LiDAR-only database) ``img_path`` (file name), ``cam2img`` (3x3),
  ``sample_data_token``, ``timestamp``, ``cam2ego``, ``lidar2cam``. ``lidar2cam`` follows
  mmdet3d's ``obtain_sensor2top``: key LiDAR -> ego (key time) -> global -> ego (camera
  time) -> camera, so it includes the ego motion between the two exposures.
* ``instances`` (absent for v1.0-test): one dict per sample_annotation, in the sample's
  ``anns`` order: ``bbox_3d`` ``[x, y, z, l, w, h, yaw]`` (geometric centre, LiDAR frame),
  ``bbox_label`` and ``bbox_label_3d`` (index in CLASSES, -1 for other categories),
  ``bbox_3d_isvalid`` (num_lidar_pts + num_radar_pts > 0), ``velocity`` ``[vx, vy]`` in the
  LiDAR frame, ``num_lidar_pts``, ``num_radar_pts`` and our extra ``attr_label`` (index of
  the first attribute in ATTRIBUTES, -1 if none).
  Velocity: ``nusc.box_velocity`` is NaN for an object annotated once (or with a gap over
  1.5 s); mmdet3d's converter keeps the NaN and its dataset replaces it with 0 at load time.
  We write 0 already (and the dataset still zeroes NaN from mmdet3d's files), so every
  consumer of the info file (GT-paste database, exporters) sees finite numbers.
* ``cam_instances`` (2D boxes per camera, for monocular detectors) is not written.

Cameras: nuScenes-format databases of other vehicles have other camera sets, and a
LiDAR-only database has none. ``cameras`` names the channels to write, in the order the
dataset stacks the views; every sample must have each of them (a missing one is an
:class:`InfoCreationError` naming the sample, the camera and the cameras the sample has).
``metainfo['cameras']`` records the list (an extra key mmdet3d ignores).

Splits come from the devkit's ``create_splits_scenes()``: train/val for v1.0-trainval,
mini_train/mini_val (written as ``_train``/``_val``, as mmdet3d) for v1.0-mini, test for
v1.0-test; only scenes present in the database count, and a scene whose first LiDAR file
is missing is skipped (a partial download), as mmdet3d does.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .info_files import info_file_name, make_metainfo, save_info_file
from .nuscenes_names import ATTRIBUTES, CAMERAS, CLASSES, LIDAR, SPLITS_OF_VERSION

logger = logging.getLogger(__name__)

NUM_POINT_FEATURES = 5  # x, y, z, intensity, ring index in nuScenes .pcd.bin files


class InfoCreationError(ValueError):
    """The database cannot be turned into info files; the message names the file."""


def pose_matrix(rotation: Any, translation: Any) -> np.ndarray:
    """4x4 float64 rigid transform from a devkit quaternion ``[w, x, y, z]`` and a
    translation ``[x, y, z]`` (a calibrated_sensor or ego_pose record)."""
    from pyquaternion import Quaternion

    matrix = np.eye(4)
    matrix[:3, :3] = Quaternion(rotation).rotation_matrix
    matrix[:3, 3] = translation
    return matrix


def open_database(root: str | Path, version: str):
    """``NuScenes(version, root)``, with errors that name the missing folder or table."""
    root = Path(root)
    if version not in SPLITS_OF_VERSION:
        raise InfoCreationError(f"unknown nuScenes version {version!r}; use one of "
                                f"{sorted(SPLITS_OF_VERSION)}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: nuScenes data root not found")
    if not (root / version).is_dir():
        raise FileNotFoundError(f"{root / version}: table folder of {version} not found "
                                f"(expected {root}/{version}/scene.json, sample.json, ...)")
    from nuscenes.nuscenes import NuScenes

    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except AssertionError as error:  # the devkit checks with bare asserts
        raise InfoCreationError(f"{root / version}: nuscenes-devkit refused the database: "
                                f"{error}") from error
    except json.JSONDecodeError as error:  # the devkit does not say which table
        raise InfoCreationError(f"{root / version}: a table is not valid JSON ({error})"
                                ) from error


def _first_lidar_exists(nusc, scene: dict) -> bool:
    sample = nusc.get("sample", scene["first_sample_token"])
    return Path(nusc.get_sample_data_path(sample["data"][LIDAR])).is_file()


def split_scenes(nusc, version: str) -> dict[str, list[str]]:
    """Scene tokens of each output split (``train``/``val`` or ``test``), in table order.

    Scenes of the database in none of the version's splits, and scenes whose first LiDAR
    file is missing, are left out with a warning.
    """
    from nuscenes.utils.splits import create_splits_scenes

    names_of_split = create_splits_scenes()
    split_of_name: dict[str, str] = {}
    for devkit_split in SPLITS_OF_VERSION[version]:
        for name in names_of_split[devkit_split]:
            split_of_name[name] = devkit_split.replace("mini_", "")
    result: dict[str, list[str]] = {s.replace("mini_", ""): []
                                    for s in SPLITS_OF_VERSION[version]}
    outside, missing = [], []
    for scene in nusc.scene:
        split = split_of_name.get(scene["name"])
        if split is None:
            outside.append(scene["name"])
        elif not _first_lidar_exists(nusc, scene):
            missing.append(scene["name"])
        else:
            result[split].append(scene["token"])
    if outside:
        logger.warning("%d scene(s) of %s are in none of its splits %s and are skipped: %s",
                       len(outside), version, SPLITS_OF_VERSION[version], outside[:5])
    if missing:
        logger.warning("%d scene(s) skipped, their LiDAR files are missing: %s",
                       len(missing), missing[:5])
    return result


def _sensor_record(nusc, sample_data_token: str) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """(sample_data, calibrated_sensor, sensor2ego, ego2global) of one sample_data."""
    sample_data = nusc.get("sample_data", sample_data_token)
    calibration = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sample_data["ego_pose_token"])
    sensor2ego = pose_matrix(calibration["rotation"], calibration["translation"])
    return sample_data, calibration, sensor2ego, pose_matrix(pose["rotation"], pose["translation"])


def _lidar_sweeps(nusc, lidar_data: dict, global2lidar: np.ndarray,
                  max_sweeps: int) -> list[dict]:
    sweeps = []
    record = lidar_data
    while len(sweeps) < max_sweeps and record["prev"]:
        record, _, sensor2ego, ego2global = _sensor_record(nusc, record["prev"])
        # sweep sensor -> ego (sweep time) -> global -> ego (key time) -> key LiDAR
        sensor2lidar = global2lidar @ ego2global @ sensor2ego
        sweeps.append({
            "lidar_points": {"lidar_path": record["filename"], "lidar2ego": sensor2ego.tolist(),
                             "lidar2sensor": np.linalg.inv(sensor2lidar).tolist()},
            "ego2global": ego2global.tolist(),
            "timestamp": record["timestamp"] / 1e6,
            "sample_data_token": record["token"],
        })
    return sweeps


def check_cameras(cameras: Sequence[str]) -> tuple[str, ...]:
    """`cameras` as a tuple of distinct channel names; the LiDAR channel, empty or
    repeated names are an :class:`InfoCreationError`."""
    cameras = tuple(str(c) for c in cameras)
    if any(not c or c.lower() == "none" for c in cameras):
        raise InfoCreationError(f"camera names must be channel names, got {list(cameras)} "
                                f"(an empty list means LiDAR-only)")
    if LIDAR in cameras:
        raise InfoCreationError(f"{LIDAR} is the LiDAR channel, not a camera")
    repeated = sorted({c for c in cameras if cameras.count(c) > 1})
    if repeated:
        raise InfoCreationError(f"cameras {repeated} are listed more than once")
    return cameras


def _sample_cameras(nusc, sample: dict) -> list[str]:
    """The camera channels a sample has (its sample_data whose sensor modality is camera)."""
    channels = []
    for token in sample["data"].values():
        record = nusc.get("sample_data", token)
        if record.get("sensor_modality") == "camera":
            channels.append(record["channel"])
    return sorted(channels)


def _camera_infos(nusc, sample: dict, global2lidar: np.ndarray,
                  cameras: Sequence[str] = CAMERAS) -> dict[str, dict]:
    images = {}
    for camera in cameras:
        if camera not in sample["data"]:
            raise InfoCreationError(
                f"sample {sample['token']} has no {camera} sample_data; its cameras are "
                f"{_sample_cameras(nusc, sample)}. Pass the cameras the database has "
                f"(create_data --cameras ...; --cameras none for a LiDAR-only database)")
        record, calibration, cam2ego, ego2global = _sensor_record(nusc, sample["data"][camera])
        cam2lidar = global2lidar @ ego2global @ cam2ego
        images[camera] = {
            "img_path": Path(record["filename"]).name,
            "cam2img": np.asarray(calibration["camera_intrinsic"], dtype=float).tolist(),
            "sample_data_token": record["token"],
            "timestamp": record["timestamp"] / 1e6,
            "cam2ego": cam2ego.tolist(),
            "lidar2cam": np.linalg.inv(cam2lidar).tolist(),
        }
    return images


def _attribute_label(nusc, annotation: dict) -> int:
    if not annotation["attribute_tokens"]:
        return -1
    name = nusc.get("attribute", annotation["attribute_tokens"][0])["name"]
    return ATTRIBUTES.index(name) if name in ATTRIBUTES else -1


def _instances(nusc, sample: dict, lidar_token: str, global2lidar: np.ndarray) -> list[dict]:
    from nuscenes.eval.detection.utils import category_to_detection_name

    # Boxes come back in the key LiDAR frame, in the order of sample['anns'].
    _, boxes, _ = nusc.get_sample_data(lidar_token)
    global2lidar_rotation = global2lidar[:3, :3]
    instances = []
    for token, box in zip(sample["anns"], boxes):
        annotation = nusc.get("sample_annotation", token)
        name = category_to_detection_name(annotation["category_name"])
        label = CLASSES.index(name) if name in CLASSES else -1
        velocity = nusc.box_velocity(token)[:2]
        velocity = global2lidar_rotation @ np.array([velocity[0], velocity[1], 0.0])
        velocity = [0.0 if math.isnan(v) else float(v) for v in velocity[:2]]
        width, length, height = box.wlh
        instances.append({
            "bbox_label": label,
            "bbox_3d": [*map(float, box.center), float(length), float(width), float(height),
                        float(box.orientation.yaw_pitch_roll[0])],
            "bbox_3d_isvalid": bool(annotation["num_lidar_pts"] + annotation["num_radar_pts"] > 0),
            "bbox_label_3d": label,
            "attr_label": _attribute_label(nusc, annotation),
            "num_lidar_pts": int(annotation["num_lidar_pts"]),
            "num_radar_pts": int(annotation["num_radar_pts"]),
            "velocity": velocity,
        })
    return instances


def build_sample_info(nusc, sample: dict, sample_idx: int, *, max_sweeps: int = 10,
                      with_annotations: bool = True, cameras: Sequence[str] = CAMERAS) -> dict:
    """The info dict of one nuScenes sample (layout in the module docstring); ``images``
    holds the `cameras`, in that order."""
    lidar_token = sample["data"][LIDAR]
    _, _, lidar2ego, ego2global = _sensor_record(nusc, lidar_token)
    lidar_path = Path(nusc.get_sample_data_path(lidar_token))
    if not lidar_path.is_file():
        raise FileNotFoundError(f"{lidar_path}: LiDAR file of sample {sample['token']} not found")
    global2lidar = np.linalg.inv(ego2global @ lidar2ego)
    info = {
        "sample_idx": sample_idx,
        "token": sample["token"],
        "timestamp": sample["timestamp"] / 1e6,
        "ego2global": ego2global.tolist(),
        "images": _camera_infos(nusc, sample, global2lidar, cameras),
        "lidar_points": {"num_pts_feats": NUM_POINT_FEATURES, "lidar_path": lidar_path.name,
                         "lidar2ego": lidar2ego.tolist()},
        "lidar_sweeps": _lidar_sweeps(nusc, nusc.get("sample_data", lidar_token),
                                      global2lidar, max_sweeps),
    }
    if with_annotations:
        info["instances"] = _instances(nusc, sample, lidar_token, global2lidar)
    info["scene_token"] = sample["scene_token"]
    return info


def _scene_samples(nusc, scene_token: str) -> list[dict]:
    """The samples of a scene in time order (following the ``next`` chain)."""
    samples, token = [], nusc.get("scene", scene_token)["first_sample_token"]
    while token:
        sample = nusc.get("sample", token)
        samples.append(sample)
        token = sample["next"]
    return samples


def create_nuscenes_infos(root: str | Path, version: str = "v1.0-trainval",
                          out_dir: str | Path | None = None, *, extra_tag: str = "nuscenes",
                          max_sweeps: int = 10, progress: bool = True,
                          cameras: Sequence[str] = CAMERAS) -> dict[str, dict]:
    """Write ``{out_dir}/{extra_tag}_infos_{split}.pkl`` for each split of `version`.

    Args:
        root: nuScenes data root (``samples/``, ``sweeps/``, ``{version}/*.json``).
        version: ``v1.0-trainval``, ``v1.0-mini`` (train/val) or ``v1.0-test`` (test).
        out_dir: where the info files go (default `root`, as mmdet3d).
        extra_tag: file name prefix.
        max_sweeps: previous LiDAR sweeps kept per sample.
        progress: show mmengine's progress bar.
        cameras: camera channels written to each sample's ``images``, in this order
            (default the six nuScenes cameras); ``()`` for a LiDAR-only database.

    Returns:
        ``{split: {'path': Path, 'samples': int, 'scenes': int}}``.
    """
    if max_sweeps < 0:
        raise InfoCreationError(f"max_sweeps must be >= 0, got {max_sweeps}")
    cameras = check_cameras(cameras)
    nusc = open_database(root, version)
    out_dir = Path(out_dir) if out_dir is not None else Path(root)
    scenes = split_scenes(nusc, version)
    samples = {split: [s for token in tokens for s in _scene_samples(nusc, token)]
               for split, tokens in scenes.items()}
    with_annotations = version != "v1.0-test"
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(sum(len(v) for v in samples.values()))
    written: dict[str, dict] = {}
    for split, split_samples in samples.items():
        data_list = []
        for index, sample in enumerate(split_samples):
            data_list.append(build_sample_info(nusc, sample, index, max_sweeps=max_sweeps,
                                               with_annotations=with_annotations,
                                               cameras=cameras))
            if bar is not None:
                bar.update()
        metainfo = make_metainfo(version)
        metainfo["cameras"] = list(cameras)
        path = save_info_file(out_dir / info_file_name(extra_tag, split), metainfo, data_list)
        written[split] = {"path": path, "samples": len(data_list),
                          "scenes": len(scenes[split])}
    if bar is not None:
        bar.file.write("\n")
    return written
