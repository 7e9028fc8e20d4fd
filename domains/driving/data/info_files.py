"""Reading, checking and writing nuScenes info files in the mmdet3d v1.x layout.

An info file is a pickle of ``{'metainfo': {...}, 'data_list': [sample, ...]}`` exactly as
mmdet3d's ``create_data.py`` / ``update_infos_to_v2.py`` write it (``info_version`` '1.1'),
so files converted by mmdet3d load here unchanged and ours load in mmdet3d. The per-sample
layout is documented in :mod:`.info_creation`.

Files of another layout get an :class:`InfoFileError` that names the file and says what to
do: the v0.x layout (``{'infos': [...], 'metadata': {...}}``) has to be converted first, and
a file made from another database version (``metainfo['version']``) than the dataset was
configured for is refused instead of silently evaluated against the wrong split.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from interlace.core.engine.atomic_files import atomic_write
from interlace.core.engine.safe_pickle import UnsafePickleError, load_pickle

from .nuscenes_names import CLASSES

INFO_VERSION = "1.1"  # what mmdet3d v1.x writes
DATASET_NAME = "nuscenes"
# Keys every sample of a v1.x nuScenes info file has (``instances`` is absent for v1.0-test).
REQUIRED_SAMPLE_KEYS: tuple[str, ...] = (
    "sample_idx", "token", "timestamp", "ego2global", "lidar_points", "images")


class InfoFileError(ValueError):
    """An info file that cannot be used as it is; the message names the file."""


def info_file_name(extra_tag: str, split: str) -> str:
    """``{extra_tag}_infos_{split}.pkl``, mmdet3d's naming (split: train / val / test)."""
    return f"{extra_tag}_infos_{split}.pkl"


def make_metainfo(version: str, classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """The ``metainfo`` block of an info file: category -> label index, dataset, versions."""
    return {"categories": {name: index for index, name in enumerate(classes)},
            "dataset": DATASET_NAME, "version": version, "info_version": INFO_VERSION}


def save_info_file(path: str | Path, metainfo: dict, data_list: list[dict]) -> Path:
    """Pickle ``{'metainfo', 'data_list'}`` to `path` atomically (temporary file, then
    rename), so a crash never leaves a truncated info file behind."""
    path = Path(path)
    with atomic_write(path, "wb") as stream:
        pickle.dump({"metainfo": metainfo, "data_list": data_list}, stream,
                    protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _read_pickle(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: info file not found")
    try:
        return load_pickle(path)  # refuses anything but plain data and numpy arrays
    except UnsafePickleError:
        raise  # names the file and the refused global already
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
        # AttributeError / ImportError: the pickle refers to classes of a package that is
        # not installed here (a file written by some other tool).
        raise InfoFileError(f"{path}: not a readable info pickle ({type(error).__name__}: "
                            f"{error})") from error


def check_info_payload(path: str | Path, payload: Any,
                       expected_version: str | None = None) -> None:
    """Raise :class:`InfoFileError` naming `path` unless `payload` is a v1.x nuScenes info
    file (of `expected_version`, when given)."""
    if not isinstance(payload, dict):
        raise InfoFileError(f"{path}: expected a dict with 'metainfo' and 'data_list', got "
                            f"{type(payload).__name__}")
    if "infos" in payload and "data_list" not in payload:
        version = (payload.get("metadata") or {}).get("version", "unknown version")
        raise InfoFileError(
            f"{path}: old mmdet3d v0.x info layout ('infos'/'metadata', {version}); convert it "
            f"with mmdet3d's tools/dataset_converters/update_infos_to_v2.py --dataset nuscenes "
            f"or recreate it with `python tools/create_data.py nuscenes`")
    missing = [key for key in ("metainfo", "data_list") if key not in payload]
    if missing:
        raise InfoFileError(f"{path}: missing top-level key(s) {missing}; found "
                            f"{sorted(payload)} (expected the mmdet3d v1.x info layout)")
    metainfo, data_list = payload["metainfo"], payload["data_list"]
    if not isinstance(metainfo, dict) or not isinstance(data_list, list):
        raise InfoFileError(f"{path}: 'metainfo' must be a dict and 'data_list' a list")
    dataset = metainfo.get("dataset", DATASET_NAME)
    if dataset != DATASET_NAME:
        raise InfoFileError(f"{path}: info file of dataset {dataset!r}, not nuScenes")
    info_version = str(metainfo.get("info_version", INFO_VERSION))
    if not info_version.startswith("1."):
        raise InfoFileError(f"{path}: info_version {info_version!r} is not supported "
                            f"(expected {INFO_VERSION})")
    if not isinstance(metainfo.get("categories"), dict):
        raise InfoFileError(f"{path}: metainfo has no 'categories' (class name -> label), "
                            f"so its labels cannot be read")
    version = metainfo.get("version")
    if expected_version is not None and version != expected_version:
        raise InfoFileError(
            f"{path}: info file was made from nuScenes {version!r}, but the dataset is "
            f"configured for {expected_version!r}; point ann_file at the {expected_version} "
            f"infos or change `version`")
    for index, sample in enumerate(data_list):
        if not isinstance(sample, dict):
            raise InfoFileError(f"{path}: data_list[{index}] is {type(sample).__name__}, "
                                f"not a dict")
        absent = [key for key in REQUIRED_SAMPLE_KEYS if key not in sample]
        if absent:
            raise InfoFileError(f"{path}: data_list[{index}] (token "
                                f"{sample.get('token', '?')}) lacks {absent}")
        if "lidar_path" not in (sample["lidar_points"] or {}):
            raise InfoFileError(f"{path}: data_list[{index}] has no lidar_points.lidar_path")


def load_info_file(path: str | Path, expected_version: str | None = None
                   ) -> tuple[dict, list[dict]]:
    """Read and check an info file; returns ``(metainfo, data_list)``.

    Raises:
        FileNotFoundError: `path` does not exist.
        InfoFileError: not a v1.x nuScenes info file, or made from another version than
            `expected_version`.
    """
    path = Path(path)
    payload = _read_pickle(path)
    check_info_payload(path, payload, expected_version)
    return payload["metainfo"], payload["data_list"]


def sweep_to_key_lidar(sample: dict, sweep: dict) -> np.ndarray:
    """(4, 4) float64 transform from a sweep's sensor frame into the key LiDAR frame of
    `sample` (one entry of ``sample['lidar_sweeps']``).

    Composed from the poses (sweep sensor -> ego -> global -> key ego -> key LiDAR) in
    float64; mmdet3d files store ``lidar2sensor`` as float32 only, so it is the fallback for
    a sweep without poses.
    """
    points = sweep["lidar_points"]
    if "lidar2ego" in points and "ego2global" in sweep:
        key_lidar2global = (np.asarray(sample["ego2global"], dtype=np.float64)
                            @ np.asarray(sample["lidar_points"]["lidar2ego"], dtype=np.float64))
        sweep2global = (np.asarray(sweep["ego2global"], dtype=np.float64)
                        @ np.asarray(points["lidar2ego"], dtype=np.float64))
        return np.linalg.solve(key_lidar2global, sweep2global)
    return np.linalg.inv(np.asarray(points["lidar2sensor"], dtype=np.float64))
