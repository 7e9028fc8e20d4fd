"""Bad sensor input that reaches the driving pipeline: a key frame with no usable point,
calibration matrices holding NaN or singular. Each is an error naming the file / sample
and the problem (batch inference records it and goes on: tests/faults/)."""
from __future__ import annotations

import numpy as np
import pytest

from interlace.domains.driving.data.nuscenes_dataset import calibration_problem
from interlace.domains.driving.data.transforms import LoadPointsFromFile


def _key(path) -> dict:
    return dict(lidar_points=dict(lidar_path=str(path)))


def test_point_cloud_with_zero_points_names_the_file(tmp_path):
    empty = tmp_path / "empty.pcd.bin"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pcd\.bin: 0 bytes is not a positive multiple"):
        LoadPointsFromFile()(_key(empty))
    all_nan = tmp_path / "nan.pcd.bin"
    np.full((4, 5), np.nan, np.float32).tofile(all_nan)
    with pytest.raises(ValueError, match=r"nan\.pcd\.bin: the point cloud has 0 points with "
                                         r"finite coordinates \(4 NaN / inf dropped\)"):
        LoadPointsFromFile()(_key(all_nan))
    empty_npy = tmp_path / "empty.npy"
    np.save(empty_npy, np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match=r"empty\.npy: expected a non-empty \(P, 5\) array"):
        LoadPointsFromFile()(_key(empty_npy))


def _sample(**changes) -> dict:
    rigid = np.eye(4)
    rigid[:3, 3] = (1.0, 2.0, 0.5)
    camera = dict(cam2img=np.array([[800.0, 0, 400], [0, 800, 225], [0, 0, 1]]),
                  lidar2cam=rigid.copy(), lidar2img=rigid.copy())
    info = dict(ego2global=rigid.copy(), lidar_points=dict(lidar2ego=rigid.copy()),
                images=dict(CAM_FRONT=camera), lidar_sweeps=[dict(sensor2lidar=rigid.copy(),
                                                                  ego2global=rigid.copy())])
    for path, value in changes.items():
        record = info
        *parents, key = path.split(".")
        for name in parents:
            record = record[int(name)] if name.isdigit() else record[name]
        record[key] = value
    return info


def test_usable_calibration_passes():
    assert calibration_problem(_sample()) is None
    # A 3 x 3 intrinsic matrix padded to 4 x 4 with a zero row is still fine.
    padded = np.zeros((4, 4))
    padded[:3, :3] = [[800.0, 0, 400], [0, 800, 225], [0, 0, 1]]
    assert calibration_problem(_sample(**{"images.CAM_FRONT.cam2img": padded})) is None


def test_calibration_with_nan_names_the_sensor_and_matrix():
    k = np.array([[800.0, 0, 400], [0, np.nan, 225], [0, 0, 1]])
    problem = calibration_problem(_sample(**{"images.CAM_FRONT.cam2img": k}))
    assert problem.startswith("camera CAM_FRONT: cam2img holds NaN or inf")
    problem = calibration_problem(_sample(**{"lidar_sweeps.0.ego2global": np.full((4, 4), np.inf)}))
    assert problem.startswith("sweep 0: ego2global holds NaN or inf")


def test_singular_calibration_names_the_sensor_and_matrix():
    flat = np.eye(4)
    flat[2, 2] = 0.0  # squashes z: no inverse
    assert calibration_problem(_sample(**{"lidar_points.lidar2ego": flat})).startswith(
        "lidar_points: lidar2ego is singular")
    no_focal = np.array([[0.0, 0, 400], [0, 800, 225], [0, 0, 1]])
    assert calibration_problem(_sample(**{"images.CAM_FRONT.cam2img": no_focal})).startswith(
        "camera CAM_FRONT: cam2img is singular")
