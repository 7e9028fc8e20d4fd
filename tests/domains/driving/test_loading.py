"""Loading points, sweeps, camera images and annotations; packing the result."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, InstanceData
from PIL import Image

from interlace.domains.driving.data.nuscenes_names import CAMERAS
from interlace.domains.driving.data.transforms import (LoadAnnotations3D, LoadMultiViewImages,
                                                       LoadPointsFromFile,
                                                       LoadPointsFromMultiSweeps,
                                                       Pack3DDetInputs)
from interlace.domains.driving.data.transforms import image_loading, loading


def write_bin(path, points) -> str:
    np.asarray(points, np.float32).tofile(path)
    return str(path)


def key_sample(path) -> dict:
    return dict(token="tok", sample_idx=3, timestamp=100.0,
                lidar_points=dict(lidar_path=str(path), num_pts_feats=5, lidar2ego=np.eye(4)))


@pytest.fixture
def logged(monkeypatch):
    """Messages print_log sent from the loaders (mmengine's logger does not propagate)."""
    messages: list[str] = []

    def record(msg, logger=None, level=None):
        messages.append(msg)
    monkeypatch.setattr(loading, "print_log", record)
    monkeypatch.setattr(image_loading, "print_log", record)
    return messages


def test_load_points_keeps_five_columns_and_sets_key_time_lag_to_zero(tmp_path):
    path = write_bin(tmp_path / "k.pcd.bin", [[1, 2, 3, 40, 7], [4, 5, 6, 50, 9]])
    out = LoadPointsFromFile(load_dim=5, use_dim=5)(key_sample(path))
    np.testing.assert_array_equal(out["points"], [[1, 2, 3, 40, 0], [4, 5, 6, 50, 0]])
    assert out["points"].dtype == np.float32 and out["num_invalid_points"] == 0


@pytest.mark.parametrize("num_bytes", [0, 22])
def test_truncated_or_empty_point_file_error_names_file_and_size(tmp_path, num_bytes):
    path = tmp_path / "bad.pcd.bin"
    path.write_bytes(b"\0" * num_bytes)
    with pytest.raises(ValueError, match=rf"bad\.pcd\.bin: {num_bytes} bytes .* multiple of 20"):
        LoadPointsFromFile()(key_sample(path))


def test_nan_and_inf_points_are_dropped_counted_and_logged_once_per_file(tmp_path, logged):
    path = write_bin(tmp_path / "k.pcd.bin", [[1, 1, 1, 1, 0], [np.nan, 0, 0, 1, 0],
                                               [0, np.inf, 0, 1, 0], [2, 2, 2, 2, 0]])
    loader = LoadPointsFromFile()
    out = loader(key_sample(path))
    loader(key_sample(path))
    np.testing.assert_array_equal(out["points"][:, 0], [1, 2])
    assert out["num_invalid_points"] == 2
    assert len(logged) == 1 and "k.pcd.bin: dropped 2 of 4 points" in logged[0]


def _sweep(path, sensor2lidar, lag):
    return dict(lidar_points=dict(lidar_path=str(path), lidar2ego=np.eye(4)),
                ego2global=np.eye(4), timestamp=100.0 - lag, sensor2lidar=sensor2lidar,
                time_lag=lag)


def test_sweeps_are_moved_to_the_key_frame_with_their_time_lag(tmp_path):
    key = write_bin(tmp_path / "k.bin", [[0.2, 0.3, 0, 1, 0]])   # close, but key: kept
    # Sweep sensor: rotated 90 deg and 1 m forward, 2 m left of the key LiDAR.
    s2l = np.eye(4)
    s2l[:2, :2] = [[0, -1], [1, 0]]
    s2l[:2, 3] = [1, 2]
    sweep = write_bin(tmp_path / "s.bin", [[2, 0, 0.5, 9, 0], [0.5, -0.5, 0, 9, 0]])
    results = key_sample(key)
    results["lidar_sweeps"] = [_sweep(sweep, s2l, 0.05)]
    out = LoadPointsFromMultiSweeps(sweeps_num=10)(LoadPointsFromFile()(results))
    # (2, 0) rotated to (0, 2), plus (1, 2) -> (1, 4); (0.5, -0.5) is within 1 m: removed.
    np.testing.assert_allclose(out["points"], [[0.2, 0.3, 0, 1, 0], [1, 4, 0.5, 9, 0.05]],
                               atol=1e-6)
    assert out["num_sweeps_used"] == 1


def test_missing_or_truncated_sweep_is_skipped_and_logged(tmp_path, logged):
    key = write_bin(tmp_path / "k.bin", [[5, 5, 0, 1, 0]])
    good = write_bin(tmp_path / "good.bin", [[3, 3, 0, 1, 0]])
    (tmp_path / "short.bin").write_bytes(b"\0" * 7)
    results = key_sample(key)
    results["lidar_sweeps"] = [_sweep(tmp_path / "gone.bin", np.eye(4), 0.05),
                               _sweep(good, np.eye(4), 0.1),
                               _sweep(tmp_path / "short.bin", np.eye(4), 0.15)]
    out = LoadPointsFromMultiSweeps(test_mode=True)(LoadPointsFromFile()(results))
    assert out["num_sweeps_used"] == 1 and out["points"].shape == (2, 5)
    assert len(logged) == 2
    assert "gone.bin: sweep skipped" in logged[0] and "short.bin: sweep skipped" in logged[1]


def test_test_mode_takes_the_newest_sweeps_and_training_samples_a_subset(tmp_path):
    key = write_bin(tmp_path / "k.bin", [[5, 5, 0, 1, 0]])
    sweeps = [_sweep(write_bin(tmp_path / f"s{i}.bin", [[10 + i, 0, 0, 1, 0]]), np.eye(4),
                     0.05 * (i + 1)) for i in range(5)]

    def lags(test_mode):
        results = key_sample(key)
        results["lidar_sweeps"] = sweeps
        out = LoadPointsFromMultiSweeps(sweeps_num=3, test_mode=test_mode)(
            LoadPointsFromFile()(results))
        return sorted(round(float(v), 3) for v in out["points"][1:, 4])

    assert lags(True) == [0.05, 0.1, 0.15]
    np.random.seed(0)
    drawn = {tuple(lags(False)) for _ in range(10)}
    assert all(len(d) == 3 and len(set(d)) == 3 for d in drawn) and len(drawn) > 1


def test_pad_empty_sweeps_repeats_the_key_frame_without_close_points(tmp_path):
    key = write_bin(tmp_path / "k.bin", [[5, 5, 0, 1, 0], [0.1, 0.1, 0, 1, 0]])
    out = LoadPointsFromMultiSweeps(sweeps_num=2, pad_empty_sweeps=True)(
        LoadPointsFromFile()(key_sample(key)))
    assert out["points"].shape == (4, 5) and out["num_sweeps_used"] == 0


def _camera_sample(tmp_path, missing=(), size=(8, 12)):
    images = {}
    for v, cam in enumerate(CAMERAS):
        path = tmp_path / f"{cam}.jpg"
        if v not in missing:
            Image.new("RGB", (size[1], size[0]), (10 * v, 0, 200)).save(path)
        k = np.array([[100.0 + v, 0, 6], [0, 100, 4], [0, 0, 1]])
        lidar2cam = np.eye(4)
        lidar2cam[:3, 3] = [v, 0, 0]
        images[cam] = dict(img_path=str(path), cam2img=k, lidar2cam=lidar2cam,
                           cam2ego=np.eye(4), timestamp=100.0)
    return dict(token="tok", images=images)


def test_multi_view_images_load_in_camera_order_with_padded_calibration(tmp_path):
    out = LoadMultiViewImages()(_camera_sample(tmp_path))
    assert len(out["img"]) == 6 and out["img"][0].shape == (8, 12, 3)
    assert out["img"][0].dtype == np.uint8 and out["img_shape"] == (8, 12)
    # BGR as mmcv: the blue 200 is channel 0; view 3's red 30 is channel 2.
    pixel = out["img"][3][4, 6].astype(int)
    assert abs(pixel[0] - 200) <= 2 and abs(pixel[2] - 30) <= 2
    assert out["cam2img"].shape == (6, 4, 4) and out["cam2img"][2, 3, 3] == 1
    expected = out["cam2img"][4] @ out["lidar2cam"][4]
    np.testing.assert_allclose(out["lidar2img"][4], expected)
    assert out["lidar2img"][4][0, 3] == 104.0 * 4        # fx * t_x of view 4
    np.testing.assert_array_equal(out["img_aug_matrix"], np.tile(np.eye(4), (6, 1, 1)))
    assert not out["view_missing"].any()


def test_missing_view_becomes_zero_image_flagged_and_logged(tmp_path, logged):
    sample = _camera_sample(tmp_path, missing=(2,))
    (tmp_path / "CAM_BACK.jpg").write_bytes(b"not a jpeg")
    out = LoadMultiViewImages()(sample)
    np.testing.assert_array_equal(out["view_missing"], [False, False, True, True, False, False])
    assert out["img"][2].shape == (8, 12, 3) and not out["img"][2].any()
    assert any("CAM_FRONT_LEFT.jpg" in m and "does not exist" in m for m in logged)
    assert any("CAM_BACK.jpg" in m and "cannot decode" in m for m in logged)


def test_all_views_missing_is_an_error_naming_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="CAM_FRONT.jpg.*CAM_BACK_RIGHT.jpg"):
        LoadMultiViewImages()(_camera_sample(tmp_path, missing=range(6)))


def test_annotations_are_copied_and_empty_at_test_time():
    boxes = np.arange(18, dtype=np.float32).reshape(2, 9)
    out = LoadAnnotations3D()(dict(ann_info=dict(gt_bboxes_3d=boxes,
                                                 gt_labels_3d=np.array([1, 4]))))
    np.testing.assert_array_equal(out["gt_bboxes_3d"], boxes)
    assert out["gt_labels_3d"].dtype == np.int64
    empty = LoadAnnotations3D()({})
    assert empty["gt_bboxes_3d"].shape == (0, 9) and empty["gt_labels_3d"].shape == (0,)


def test_pack_gives_tensors_instances_and_float32_metainfo():
    results = dict(token="tok", sample_idx=3, timestamp=1.5,
                   lidar_points=dict(lidar_path="/x.bin", lidar2ego=np.eye(4)),
                   points=np.ones((7, 5), np.float32),
                   img=[np.full((4, 6, 3), v, np.float32) for v in range(6)],
                   img_shape=(4, 6), lidar2img=np.tile(np.eye(4), (6, 1, 1)),
                   img_aug_matrix=np.tile(np.eye(4), (6, 1, 1)),
                   view_missing=np.zeros(6, bool), num_sweeps_used=9,
                   gt_bboxes_3d=np.zeros((2, 9), np.float32), gt_labels_3d=np.array([0, 8]))
    packed = Pack3DDetInputs()(results)
    assert packed["inputs"]["points"].shape == (7, 5)
    img = packed["inputs"]["img"]
    assert img.shape == (6, 3, 4, 6) and float(img[5, 2, 3, 5]) == 5.0
    sample = packed["data_samples"]
    assert isinstance(sample, BaseDataElement)
    assert isinstance(sample.gt_instances_3d, InstanceData)
    assert sample.gt_instances_3d.bboxes_3d.shape == (2, 9)
    assert sample.gt_instances_3d.labels_3d.dtype == torch.long
    assert sample.lidar2img.dtype == np.float32 and sample.lidar_path == "/x.bin"
    np.testing.assert_array_equal(sample.lidar_aug_matrix, np.eye(4))  # no augmentation ran
    assert sample.num_sweeps_used == 9 and sample.token == "tok"


def test_pack_without_ground_truth_has_no_instances():
    packed = Pack3DDetInputs()(dict(points=np.ones((3, 5), np.float32)))
    assert "gt_instances_3d" not in packed["data_samples"]
