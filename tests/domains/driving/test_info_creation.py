"""Info files built with nuscenes-devkit: mmdet3d v1.x keys, splits, and geometry that maps
back onto the devkit's own annotations, poses and projections."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from pyquaternion import Quaternion

from interlace.domains.driving.data.info_creation import create_nuscenes_infos
from interlace.domains.driving.data.info_files import (InfoFileError, load_info_file,
                                                       save_info_file, sweep_to_key_lidar)
from interlace.domains.driving.data.nuscenes_names import ATTRIBUTES, CAMERAS, CLASSES

SAMPLE_KEYS = {"sample_idx", "token", "timestamp", "ego2global", "images", "lidar_points",
               "lidar_sweeps", "instances", "scene_token"}
INSTANCE_KEYS = {"bbox_label", "bbox_3d", "bbox_3d_isvalid", "bbox_label_3d", "attr_label",
                 "num_lidar_pts", "num_radar_pts", "velocity"}
IMAGE_KEYS = {"img_path", "cam2img", "sample_data_token", "timestamp", "cam2ego", "lidar2cam"}
SWEEP_KEYS = {"lidar_points", "ego2global", "timestamp", "sample_data_token"}


def make_nuscenes_db(root, version: str, scenes: int, samples: int):
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes
    make_synthetic_nuscenes(root, scenes=scenes, samples_per_scene=samples, version=version)
    return root


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A generated v1.0-mini database (2 scenes x 3 samples), its infos and the devkit."""
    from nuscenes.nuscenes import NuScenes
    root = make_nuscenes_db(tmp_path_factory.mktemp("nuscenes_mini"), "v1.0-mini", 2, 3)
    out = tmp_path_factory.mktemp("infos")
    written = create_nuscenes_infos(root, "v1.0-mini", out, max_sweeps=10, progress=False)
    nusc = NuScenes("v1.0-mini", str(root), verbose=False)
    infos = {split: load_info_file(entry["path"], "v1.0-mini")[1]
             for split, entry in written.items()}
    return dict(root=root, out=out, written=written, nusc=nusc, infos=infos)


def _all_samples(mini):
    return [info for infos in mini["infos"].values() for info in infos]


def _matrix(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _angle_gap(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def test_mini_writes_train_and_val_with_mmdet3d_v1_keys(mini):
    from nuscenes.utils.splits import create_splits_scenes

    assert sorted(p.name for p in mini["out"].iterdir()) == [
        "nuscenes_infos_train.pkl", "nuscenes_infos_val.pkl"]  # no temporary files left
    with open(mini["written"]["train"]["path"], "rb") as stream:
        payload = pickle.load(stream)
    assert set(payload) == {"metainfo", "data_list"}
    assert payload["metainfo"] == {"categories": {c: i for i, c in enumerate(CLASSES)},
                                   "dataset": "nuscenes", "version": "v1.0-mini",
                                   "info_version": "1.1", "cameras": list(CAMERAS)}
    splits = create_splits_scenes()
    nusc = mini["nusc"]
    for split in ("train", "val"):
        scenes = [s for s in nusc.scene if s["name"] in splits[f"mini_{split}"]]
        expected = sum(s["nbr_samples"] for s in scenes)
        infos = mini["infos"][split]
        assert len(infos) == expected == mini["written"][split]["samples"]
        assert {i["scene_token"] for i in infos} == {s["token"] for s in scenes}
        assert [i["sample_idx"] for i in infos] == list(range(len(infos)))
    assert len(_all_samples(mini)) == 6
    for info in _all_samples(mini):
        assert set(info) == SAMPLE_KEYS
        assert set(info["lidar_points"]) == {"num_pts_feats", "lidar_path", "lidar2ego"}
        assert info["lidar_points"]["num_pts_feats"] == 5
        assert "/" not in info["lidar_points"]["lidar_path"]  # bare file name, as mmdet3d
        assert list(info["images"]) == list(CAMERAS)
        for image in info["images"].values():
            assert set(image) == IMAGE_KEYS and "/" not in image["img_path"]
            assert _matrix(image["cam2img"]).shape == (3, 3)
            assert _matrix(image["lidar2cam"]).shape == (4, 4)
        for sweep in info["lidar_sweeps"]:
            assert set(sweep) == SWEEP_KEYS
            assert set(sweep["lidar_points"]) == {"lidar_path", "lidar2ego", "lidar2sensor"}
        for instance in info["instances"]:
            assert set(instance) == INSTANCE_KEYS and len(instance["bbox_3d"]) == 7
        sample = nusc.get("sample", info["token"])
        assert info["timestamp"] == pytest.approx(sample["timestamp"] / 1e6)
        assert len(info["instances"]) == len(sample["anns"])


def test_boxes_map_back_to_devkit_annotations_in_the_global_frame(mini):
    nusc, checked = mini["nusc"], 0
    for info in _all_samples(mini):
        lidar2global = _matrix(info["ego2global"]) @ _matrix(info["lidar_points"]["lidar2ego"])
        sample = nusc.get("sample", info["token"])
        for token, instance in zip(sample["anns"], info["instances"]):
            annotation = nusc.get("sample_annotation", token)
            x, y, z, length, width, height, yaw = instance["bbox_3d"]
            centre = lidar2global @ np.array([x, y, z, 1.0])
            np.testing.assert_allclose(centre[:3], annotation["translation"], atol=1e-4)
            # devkit size is (w, l, h)
            np.testing.assert_allclose([width, length, height], annotation["size"], atol=1e-6)
            # yaw is the annotation's quaternion seen from the LiDAR frame...
            in_lidar = Quaternion(matrix=np.linalg.inv(lidar2global)[:3, :3]) * Quaternion(
                annotation["rotation"])
            assert _angle_gap(yaw, in_lidar.yaw_pitch_roll[0]) < 1e-6
            # ...so the heading it gives, back in the global frame, is the annotation's yaw
            # up to the small pitch / roll of the LiDAR (mmdet3d keeps yaw only).
            heading = lidar2global[:3, :3] @ np.array([math.cos(yaw), math.sin(yaw), 0.0])
            global_yaw = Quaternion(annotation["rotation"]).yaw_pitch_roll[0]
            assert _angle_gap(math.atan2(heading[1], heading[0]), global_yaw) < 2e-3
            checked += 1
    assert checked > 0


def test_velocity_rotated_to_global_equals_devkit_box_velocity(mini):
    nusc, finite = mini["nusc"], 0
    for info in _all_samples(mini):
        lidar2global = _matrix(info["ego2global"]) @ _matrix(info["lidar_points"]["lidar2ego"])
        sample = nusc.get("sample", info["token"])
        for token, instance in zip(sample["anns"], info["instances"]):
            expected = nusc.box_velocity(token)[:2]
            if np.isnan(expected).any():  # mmdet3d's dataset turns NaN into 0; we store 0
                assert instance["velocity"] == [0.0, 0.0]
                continue
            # mmdet3d's rule: the global (vx, vy, 0) rotated into the LiDAR frame, z dropped
            in_lidar = np.linalg.inv(lidar2global[:3, :3]) @ np.array([*expected, 0.0])
            np.testing.assert_allclose(instance["velocity"], in_lidar[:2], atol=1e-6)
            # Rotated back it is the devkit's velocity, up to what the dropped z carried
            # (second order in the LiDAR's pitch / roll: well under 1 % of the speed).
            rotated = lidar2global[:3, :3] @ np.array([*instance["velocity"], 0.0])
            np.testing.assert_allclose(rotated[:2], expected,
                                       atol=1e-4 + 1e-2 * np.linalg.norm(expected))
            finite += 1
    assert finite > 0


def test_labels_attributes_and_valid_flags_follow_the_devkit(mini):
    from nuscenes.eval.detection.utils import category_to_detection_name

    nusc = mini["nusc"]
    for info in _all_samples(mini):
        for token, instance in zip(nusc.get("sample", info["token"])["anns"], info["instances"]):
            annotation = nusc.get("sample_annotation", token)
            name = category_to_detection_name(annotation["category_name"])
            label = CLASSES.index(name) if name in CLASSES else -1
            assert instance["bbox_label_3d"] == instance["bbox_label"] == label
            attributes = [nusc.get("attribute", t)["name"] for t in annotation["attribute_tokens"]]
            assert instance["attr_label"] == (ATTRIBUTES.index(attributes[0]) if attributes else -1)
            assert instance["num_lidar_pts"] == annotation["num_lidar_pts"]
            assert instance["bbox_3d_isvalid"] == (
                annotation["num_lidar_pts"] + annotation["num_radar_pts"] > 0)


def test_lidar2img_maps_annotation_centres_to_the_devkit_pixel(mini):
    from nuscenes.utils.geometry_utils import view_points

    nusc, projected = mini["nusc"], 0
    for info in _all_samples(mini):
        sample = nusc.get("sample", info["token"])
        for camera, image in info["images"].items():
            record = nusc.get("sample_data", image["sample_data_token"])
            calibration = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
            pose = nusc.get("ego_pose", record["ego_pose_token"])
            intrinsics = np.eye(4)
            intrinsics[:3, :3] = _matrix(image["cam2img"])
            lidar2img = intrinsics @ _matrix(image["lidar2cam"])
            for token, instance in zip(sample["anns"], info["instances"]):
                # the devkit's chain at the camera's own ego pose
                point = np.array(nusc.get("sample_annotation", token)["translation"], float)
                point = Quaternion(pose["rotation"]).inverse.rotation_matrix @ (
                    point - np.array(pose["translation"]))
                point = Quaternion(calibration["rotation"]).inverse.rotation_matrix @ (
                    point - np.array(calibration["translation"]))
                if point[2] < 0.5:
                    continue
                expected = view_points(point.reshape(3, 1), np.array(
                    calibration["camera_intrinsic"]), normalize=True)[:2, 0]
                pixel = lidar2img @ np.array([*instance["bbox_3d"][:3], 1.0])
                np.testing.assert_allclose(pixel[:2] / pixel[2], expected, atol=1e-3)
                projected += 1
    assert projected > 0


def test_sweeps_are_newest_first_with_growing_time_lag(mini):
    nusc, full = mini["nusc"], 0
    for info in _all_samples(mini):
        sweeps = info["lidar_sweeps"]
        assert len(sweeps) <= 10
        lags = [info["timestamp"] - s["timestamp"] for s in sweeps]
        assert all(0 < a < b for a, b in zip(lags, lags[1:])) and (not lags or lags[0] > 0)
        if len(sweeps) == 10:
            full += 1
            assert lags[-1] <= 0.55
        # the chain of `prev` links, newest first
        key_lidar = nusc.get("sample", info["token"])["data"]["LIDAR_TOP"]
        token = nusc.get("sample_data", key_lidar)["prev"]
        for sweep in sweeps:
            assert sweep["sample_data_token"] == token
            token = nusc.get("sample_data", token)["prev"]
            stored = np.linalg.inv(_matrix(sweep["lidar_points"]["lidar2sensor"]))
            np.testing.assert_allclose(sweep_to_key_lidar(info, sweep), stored, atol=1e-6)
    assert full > 0, "no sample had 10 previous sweeps to check the 0.55 s bound"


def test_max_sweeps_limits_the_sweeps(mini, tmp_path):
    written = create_nuscenes_infos(mini["root"], "v1.0-mini", tmp_path, max_sweeps=2,
                                    extra_tag="two", progress=False)
    assert written["train"]["path"].name == "two_infos_train.pkl"
    infos = load_info_file(written["train"]["path"])[1]
    assert max(len(i["lidar_sweeps"]) for i in infos) == 2


def test_test_version_writes_only_a_test_file_without_instances(tmp_path):
    root = make_nuscenes_db(tmp_path / "db", "v1.0-test", 1, 1)
    written = create_nuscenes_infos(root, "v1.0-test", tmp_path / "out", max_sweeps=1,
                                    progress=False)
    assert list(written) == ["test"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["nuscenes_infos_test.pkl"]
    metainfo, data_list = load_info_file(written["test"]["path"], "v1.0-test")
    assert metainfo["version"] == "v1.0-test" and len(data_list) == 1
    assert all("instances" not in info for info in data_list)


def test_loading_an_info_file_of_another_version_names_the_file(mini):
    path = mini["written"]["val"]["path"]
    with pytest.raises(InfoFileError, match=rf"{path}.*'v1.0-mini'.*'v1.0-trainval'"):
        load_info_file(path, expected_version="v1.0-trainval")


def test_old_v0_layout_is_refused_with_the_conversion_hint(tmp_path):
    path = tmp_path / "nuscenes_infos_train.pkl"
    with open(path, "wb") as stream:
        pickle.dump({"infos": [{"token": "t"}], "metadata": {"version": "v1.0-trainval"}}, stream)
    with pytest.raises(InfoFileError, match=rf"{path}: old mmdet3d v0.x.*update_infos_to_v2"):
        load_info_file(path)


def test_broken_info_files_get_errors_naming_them(tmp_path):
    missing = tmp_path / "absent.pkl"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_info_file(missing)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(InfoFileError, match=str(garbage)):
        load_info_file(garbage)
    lacking = save_info_file(tmp_path / "lacking.pkl", {"categories": {}},
                             [{"token": "abc", "lidar_points": {}}])
    with pytest.raises(InfoFileError, match=rf"{lacking}: data_list\[0\] \(token abc\) lacks"):
        load_info_file(lacking)


def test_missing_database_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        create_nuscenes_infos(tmp_path / "nowhere", "v1.0-mini", progress=False)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "v1.0-mini")):
        create_nuscenes_infos(tmp_path, "v1.0-mini", progress=False)
