"""The generated nuScenes database loads in nuscenes-devkit and is geometrically consistent:
points counted in boxes, velocities, projections, colours, splits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from nuscenes.eval.common.loaders import load_gt
from nuscenes.eval.detection.data_classes import DetectionBox
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.nuscenes import NuScenes
from nuscenes.utils import splits
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box, transform_matrix, view_points
from PIL import Image
from pyquaternion import Quaternion

from interlace.domains.driving.data.nuscenes_names import CAMERAS, CLASSES
from interlace.domains.driving.data.synthetic import TRUTH_JSON, make_synthetic_nuscenes
from interlace.domains.driving.data.synthetic.camera_rendering import CLASS_COLOURS, \
    render_camera
from interlace.domains.driving.data.synthetic.generator import LEAD_IN_SWEEPS, \
    SWEEPS_PER_SAMPLE
from interlace.domains.driving.data.synthetic.lidar_simulation import CLASS_INTENSITY, \
    ray_box_distance
from interlace.domains.driving.data.synthetic.road_and_ego import EgoTrajectory
from interlace.domains.driving.data.synthetic.scene_names import scene_names
from interlace.domains.driving.data.synthetic.scene_objects import MEAN_SIZE, SceneObjects, \
    rectangles_overlap
from interlace.domains.driving.data.synthetic.sensor_rig import EGO_EXTENT, \
    SENSOR_CALIBRATION, scaled_intrinsic
from interlace.domains.driving.data.synthetic.tables import TABLE_NAMES

VERSION = "v1.0-mini"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, NuScenes]:
    root = tmp_path_factory.mktemp("nuscenes")
    summary = make_synthetic_nuscenes(root, 2, 3, version=VERSION, seed=0, verbose=False)
    return root, summary, NuScenes(VERSION, str(root), verbose=False)


def _lidar_points_global(nusc: NuScenes, sd_token: str) -> np.ndarray:
    """(3, P) key-frame points in the global frame, transformed the devkit way."""
    sd = nusc.get("sample_data", sd_token)
    cloud = LidarPointCloud.from_file(nusc.get_sample_data_path(sd_token))
    calibrated = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cloud.rotate(Quaternion(calibrated["rotation"]).rotation_matrix)
    cloud.translate(np.array(calibrated["translation"]))
    cloud.rotate(Quaternion(pose["rotation"]).rotation_matrix)
    cloud.translate(np.array(pose["translation"]))
    return cloud.points[:3]


def test_devkit_loads_every_table_non_empty(database):
    root, _, nusc = database
    for table in TABLE_NAMES:
        assert len(getattr(nusc, table)) > 0, table
    assert {s["channel"] for s in nusc.sensor} == {"LIDAR_TOP", *CAMERAS}
    for record in nusc.map:
        assert (root / record["filename"]).is_file()


def test_calibration_is_the_real_rig_with_quarter_intrinsics(database):
    _, _, nusc = database
    for record in nusc.calibrated_sensor:
        channel = nusc.get("sensor", record["sensor_token"])["channel"]
        real = SENSOR_CALIBRATION[channel]
        np.testing.assert_allclose(record["translation"], real.translation)
        np.testing.assert_allclose(record["rotation"], real.rotation)
        if channel != "LIDAR_TOP":
            expected = np.array(real.intrinsic) * [[0.25], [0.25], [1]]
            np.testing.assert_allclose(record["camera_intrinsic"], expected)
    assert SENSOR_CALIBRATION["CAM_FRONT"].intrinsic[0][0] == pytest.approx(1266.417203046554)


def test_sample_data_chains_sweeps_and_timestamps(database):
    _, _, nusc = database
    for scene in nusc.scene:
        samples = [nusc.get("sample", scene["first_sample_token"])]
        while samples[-1]["next"]:
            samples.append(nusc.get("sample", samples[-1]["next"]))
        assert len(samples) == scene["nbr_samples"] == 3
        for k, sample in enumerate(samples):
            lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            assert lidar["timestamp"] == sample["timestamp"] and lidar["is_key_frame"]
            previous, chain = lidar, 0
            while previous["prev"]:
                previous = nusc.get("sample_data", previous["prev"])
                if previous["is_key_frame"]:
                    break
                assert previous["filename"].startswith("sweeps/LIDAR_TOP/")
                assert 0 < lidar["timestamp"] - previous["timestamp"] < 520_000
                chain += 1
            assert chain == (LEAD_IN_SWEEPS if k == 0 else SWEEPS_PER_SAMPLE - 1)
            for channel in CAMERAS:
                camera = nusc.get("sample_data", sample["data"][channel])
                assert (camera["width"], camera["height"]) == (400, 225)
                assert camera["fileformat"] == "jpg" and camera["ego_pose_token"] != \
                    lidar["ego_pose_token"]
                assert abs(camera["timestamp"] - sample["timestamp"]) <= 30_000
                with Image.open(nusc.get_sample_data_path(camera["token"])) as image:
                    assert image.size == (400, 225)
    assert len({sd["ego_pose_token"] for sd in nusc.sample_data}) == len(nusc.sample_data)


def test_pcd_bin_files_hold_finite_float32_x5_off_the_ego(database):
    root, _, nusc = database
    files = sorted((root / "sweeps" / "LIDAR_TOP").glob("*.pcd.bin")) + \
        sorted((root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    assert len(files) == 2 * (LEAD_IN_SWEEPS + 2 * SWEEPS_PER_SAMPLE + 1)
    for path in files[::5]:
        assert path.stat().st_size % 20 == 0
        points = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
        assert np.isfinite(points).all() and 8_000 <= len(points) <= 12_000
        assert set(np.unique(points[:, 4])) <= set(range(32))
        assert np.linalg.norm(points[:, :3], axis=1).max() <= 70.1
    sample = nusc.sample[0]
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    calibrated = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    cloud = LidarPointCloud.from_file(nusc.get_sample_data_path(sd["token"]))
    ego = Quaternion(calibrated["rotation"]).rotation_matrix @ cloud.points[:3] + \
        np.array(calibrated["translation"])[:, None]
    x_min, x_max, y_min, y_max, height = EGO_EXTENT
    on_ego = (ego[0] > x_min) & (ego[0] < x_max) & (ego[1] > y_min) & (ego[1] < y_max) & \
        (ego[2] < height)
    assert not on_ego.any()


def test_val_ground_truth_has_all_classes_with_points(database):
    _, summary, nusc = database
    gt = load_gt(nusc, "mini_val", DetectionBox)
    val_scene = nusc.get("scene", next(s["token"] for s in summary["scenes"]
                                       if s["split"] == "mini_val"))
    val_samples = {s["token"] for s in nusc.sample if s["scene_token"] == val_scene["token"]}
    assert set(gt.sample_tokens) == val_samples
    boxes = gt.all
    assert {box.detection_name for box in boxes} == set(CLASSES)
    points = np.array([box.num_pts for box in boxes])
    assert (points > 0).all() and np.median(points) >= 10
    for box in boxes:
        attributes = box.attribute_name
        assert (attributes == "") == (box.detection_name in ("barrier", "traffic_cone"))


def test_box_velocity_is_the_set_velocity(database):
    root, _, nusc = database
    truth = json.loads((root / TRUTH_JSON).read_text())
    velocity_of = {token: obj["velocity"] for scene in truth.values()
                   for token, obj in scene.items()}
    moving = 0
    for ann in nusc.sample_annotation:
        if not (ann["prev"] or ann["next"]):
            continue
        velocity = nusc.box_velocity(ann["token"])
        np.testing.assert_allclose(velocity[:2], velocity_of[ann["instance_token"]], atol=1e-3)
        assert abs(velocity[2]) < 1e-6
        moving += np.linalg.norm(velocity[:2]) > 1.0
    assert moving >= 5


def test_num_lidar_pts_matches_devkit_recount(database):
    _, _, nusc = database
    exact = total = 0
    for sample in nusc.sample:
        points = _lidar_points_global(nusc, sample["data"]["LIDAR_TOP"])
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            recount = int(points_in_box(nusc.get_box(token), points).sum())
            assert abs(recount - ann["num_lidar_pts"]) <= 1, ann
            exact += recount == ann["num_lidar_pts"]
            total += 1
    assert exact >= 0.98 * total


def test_annotations_stand_on_the_ground_within_lidar_range_without_overlap(database):
    _, _, nusc = database
    for sample in nusc.sample:
        pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
                        ["ego_pose_token"])
        anns = [nusc.get("sample_annotation", token) for token in sample["anns"]]
        centre = np.array([a["translation"] for a in anns])
        size = np.array([a["size"] for a in anns])          # w, l, h
        yaw = np.array([Quaternion(a["rotation"]).yaw_pitch_roll[0] for a in anns])
        np.testing.assert_allclose(centre[:, 2] - size[:, 2] / 2, 0, atol=1e-9)
        names = [category_to_detection_name(a["category_name"]) for a in anns]
        distance = np.linalg.norm(centre[:, :2] - np.array(pose["translation"][:2]), axis=1)
        # Annotated wherever the LiDAR (70 m) sees them, also beyond the class's
        # evaluation range (DetectionEval drops those itself), as real annotations are.
        assert names and all(n is not None for n in names)
        assert (distance <= 75.0).all()
        half = size[:, [1, 0]] / 2
        overlap = rectangles_overlap(centre[:, None, :2], yaw[:, None], half[:, None],
                                     centre[None, :, :2], yaw[None], half[None])
        assert not (overlap & ~np.eye(len(anns), dtype=bool)).any()


def test_some_far_object_gets_only_a_handful_of_points(database):
    _, _, nusc = database
    far_few = []
    for ann in nusc.sample_annotation:
        sample = nusc.get("sample", ann["sample_token"])
        pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
                        ["ego_pose_token"])
        distance = np.linalg.norm(np.subtract(ann["translation"][:2], pose["translation"][:2]))
        if distance > 25 and 0 < ann["num_lidar_pts"] <= 10:
            far_few.append(ann)
    assert far_few


def _chroma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb / rgb.sum(axis=-1, keepdims=True)


def _nearest_class(rgb: np.ndarray) -> str:
    names = list(CLASS_COLOURS)
    palette = _chroma(np.array([CLASS_COLOURS[n] for n in names]))
    return names[int(np.linalg.norm(palette - _chroma(rgb), axis=1).argmin())]


def test_projected_centre_of_a_visible_object_has_its_class_colour(database):
    root, summary, nusc = database
    truth = json.loads((root / TRUTH_JSON).read_text())
    solid = ("car", "truck", "bus", "construction_vehicle", "trailer", "pedestrian",
             "motorcycle", "bicycle")
    checked = []
    for sample in nusc.sample:
        scene = nusc.get("scene", sample["scene_token"])
        first = nusc.get("sample", scene["first_sample_token"])["timestamp"]
        objects = list(truth[scene["name"]].values())
        for channel in CAMERAS:
            sd = nusc.get("sample_data", sample["data"][channel])
            t = (sd["timestamp"] - first) / 1e6
            calibrated = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            camera_to_global = transform_matrix(pose["translation"], Quaternion(pose["rotation"])) \
                @ transform_matrix(calibrated["translation"], Quaternion(calibrated["rotation"]))
            origin = camera_to_global[:3, 3]
            _, boxes, intrinsic = nusc.get_sample_data(sd["token"])
            image = np.asarray(Image.open(nusc.get_sample_data_path(sd["token"])))
            for box in boxes:
                name = category_to_detection_name(box.name)
                depth = box.center[2]
                if name not in solid or not 3 < depth < 30:
                    continue
                u, v = view_points(box.center[:, None], intrinsic, normalize=True)[:2, 0]
                if not (3 <= u < 397 and 3 <= v < 222):
                    continue
                # Unoccluded: no object is hit before this one along the centre's ray.
                target = camera_to_global[:3, :3] @ box.center + origin
                ray = (target - origin) / np.linalg.norm(target - origin)
                hits = []
                for obj in objects:
                    xy = np.add(obj["xy_at_first_sample"], np.multiply(obj["velocity"], t))
                    centre = np.array([*xy, obj["size_lwh"][2] / 2])
                    half = np.array(obj["size_lwh"]) / 2
                    hits.append((ray_box_distance(origin, ray, centre, obj["yaw"], -half,
                                                  half), obj["name"]))
                nearest = min(hits, key=lambda h: h[0])
                if nearest[1] != name or abs(np.linalg.norm(target - origin) - depth) > 1.0:
                    continue
                own = min(h[0] for h in hits if h[1] == name)
                if sorted(h[0] for h in hits)[1] < own + 0.3:     # something right behind
                    continue
                patch = image[int(round(v)) - 1:int(round(v)) + 2,
                              int(round(u)) - 1:int(round(u)) + 2].reshape(-1, 3)
                checked.append((name, _nearest_class(np.median(patch, axis=0))))
    assert len(checked) >= 5
    mismatches = [c for c in checked if c[0] != c[1]]
    assert len(mismatches) <= 0.05 * len(checked), mismatches


def test_bicycle_and_motorcycle_differ_only_in_colour(database):
    root, _, _ = database
    assert MEAN_SIZE["bicycle"] == MEAN_SIZE["motorcycle"]
    assert CLASS_INTENSITY["bicycle"] == CLASS_INTENSITY["motorcycle"]
    assert _nearest_class(CLASS_COLOURS["bicycle"]) != _nearest_class(CLASS_COLOURS["motorcycle"])
    # Rendered side by side 8 m ahead: same shape, different colours at their centres.
    size = np.array([MEAN_SIZE["bicycle"]] * 2)
    objects = SceneObjects(["bicycle", "motorcycle"], size, np.array([[8.0, 1.5], [8.0, -1.5]]),
                           np.zeros(2), np.zeros((2, 2)))
    road = EgoTrajectory(start=(0.0, 0.0), heading=0.0, speed=5.0, yaw_rate=0.0)
    calibration = SENSOR_CALIBRATION["CAM_FRONT"]
    camera_to_global = transform_matrix(calibration.translation,
                                        Quaternion(calibration.rotation))
    intrinsic = scaled_intrinsic("CAM_FRONT", "cpu")
    image = render_camera(camera_to_global, intrinsic, 400, 225, objects, 0.0, road)
    colours = {}
    for name, centre in zip(objects.names, objects.centres(0.0)):
        in_camera = np.linalg.inv(camera_to_global) @ np.append(centre, 1.0)
        u, v = view_points(in_camera[:3, None], intrinsic, normalize=True)[:2, 0]
        colours[name] = image[int(round(v)), int(round(u))]
        assert _nearest_class(colours[name]) == name
    assert np.abs(colours["bicycle"].astype(int) - colours["motorcycle"]).sum() > 100
    # And in the generated scenes their sizes come from one distribution.
    sizes = {"bicycle": [], "motorcycle": []}
    truth = json.loads((root / TRUTH_JSON).read_text())
    for scene in truth.values():
        for obj in scene.values():
            if obj["name"] in sizes:
                sizes[obj["name"]].append(obj["size_lwh"])
    for name in sizes:
        np.testing.assert_allclose(np.mean(sizes[name], axis=0), MEAN_SIZE[name], rtol=0.05)


def test_scene_names_come_from_the_devkit_split_lists(database):
    _, summary, nusc = database
    for scene in summary["scenes"]:
        assert scene["name"] in getattr(splits, scene["split"])
    assert sorted(summary["splits"]) == ["mini_train", "mini_val"]
    assert {s["name"] for s in nusc.scene} == {s["name"] for s in summary["scenes"]}
    names = scene_names("v1.0-trainval", 10, seed=3)
    assert sum(split == "val" for _, split in names) == 2
    assert all(name in getattr(splits, split) for name, split in names)
    with pytest.raises(ValueError, match="only 10 official scene names"):
        scene_names("v1.0-mini", 11, seed=0)


def test_test_version_has_no_annotations(tmp_path):
    summary = make_synthetic_nuscenes(tmp_path, 1, 2, version="v1.0-test", seed=1,
                                      verbose=False)
    nusc = NuScenes("v1.0-test", str(tmp_path), verbose=False)
    assert nusc.sample_annotation == [] and nusc.instance == []
    assert len(nusc.sample) == 2 and summary["scenes"][0]["name"] in splits.test


def test_generation_is_deterministic_given_the_seed(tmp_path):
    first = make_synthetic_nuscenes(tmp_path / "a", 1, 1, seed=5, verbose=False)
    second = make_synthetic_nuscenes(tmp_path / "b", 1, 1, seed=5, verbose=False)
    assert first["scenes"][0]["name"] == second["scenes"][0]["name"]
    for table in ("sample_data", "sample_annotation", "ego_pose"):
        assert (tmp_path / "a" / VERSION / f"{table}.json").read_bytes() == \
            (tmp_path / "b" / VERSION / f"{table}.json").read_bytes()
    for path in (tmp_path / "a" / "samples").rglob("*.*"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")
                                     ).read_bytes()


def test_tool_subcommand_writes_a_loadable_database(tmp_path, capsys):
    from interlace.tools import make_synthetic as tool

    assert tool.main(["driving", "--out", str(tmp_path), "--scenes", "1",
                      "--samples-per-scene", "1", "--seed", "2"]) == 0
    output = capsys.readouterr().out
    assert "driving: v1.0-mini with 1 scenes" in output and "mini_val" in output
    NuScenes(VERSION, str(tmp_path), verbose=False)
    with pytest.raises(SystemExit, match="only 10 official scene names"):
        tool.main(["driving", "--out", str(tmp_path / "x"), "--scenes", "12"])


@pytest.mark.slow
def test_nuscenes_scale_has_full_images_and_about_34k_points(tmp_path):
    make_synthetic_nuscenes(tmp_path, 1, 2, scale="nuscenes", seed=0, verbose=False)
    nusc = NuScenes(VERSION, str(tmp_path), verbose=False)
    for sample in nusc.sample:
        points = np.fromfile(nusc.get_sample_data_path(sample["data"]["LIDAR_TOP"]),
                             dtype=np.float32).reshape(-1, 5)
        assert 30_000 <= len(points) <= 40_000
        for channel in CAMERAS:
            sd = nusc.get("sample_data", sample["data"][channel])
            assert (sd["width"], sd["height"]) == (1600, 900)
            with Image.open(nusc.get_sample_data_path(sd["token"])) as image:
                assert image.size == (1600, 900)
    record = next(c for c in nusc.calibrated_sensor if c["camera_intrinsic"])
    assert record["camera_intrinsic"][0][0] > 800
