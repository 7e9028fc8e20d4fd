"""Generated vehicles have a front and a back in the LiDAR, the camera agrees with it, and
the generator records its version so that older sets are regenerated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from interlace.domains.driving.data.nuscenes_names import LIDAR
from interlace.domains.driving.data.synthetic import GENERATOR_JSON, GENERATOR_VERSION, \
    make_synthetic_nuscenes
from interlace.domains.driving.data.synthetic.camera_rendering import render_camera
from interlace.domains.driving.data.synthetic.lidar_simulation import CLASS_INTENSITY, \
    simulate_sweep
from interlace.domains.driving.data.synthetic.road_and_ego import EgoTrajectory
from interlace.domains.driving.data.synthetic.scene_objects import MEAN_SIZE, SceneObjects, \
    place_objects
from interlace.domains.driving.data.synthetic.sensor_rig import SENSOR_CALIBRATION, \
    scaled_intrinsic
from interlace.domains.driving.data.synthetic.vehicle_shapes import SHAPES, box_fractions, \
    part_bounds

VEHICLES = ("car", "truck", "bus", "construction_vehicle", "trailer", "motorcycle", "bicycle")
WITH_WINDSHIELD = ("car", "truck", "bus", "construction_vehicle")
ROAD = EgoTrajectory(start=(0.0, 0.0), heading=0.0, speed=5.0, yaw_rate=0.0)
# Where a single test object stands (global = ego frame at t = 0): the small two-wheelers
# closer, so that they get enough returns at the cpu scale's angular resolution.
_NEAR = {name: ((5.0, 2.5) if name in ("motorcycle", "bicycle") else (9.0, 5.0))
         for name in VEHICLES}
_AHEAD = {name: (6.0 if name in ("motorcycle", "bicycle") else 12.0) for name in VEHICLES}
_LIDAR_TO_EGO = transform_matrix(SENSOR_CALIBRATION[LIDAR].translation,
                                 Quaternion(SENSOR_CALIBRATION[LIDAR].rotation))


def _pose(ego: EgoTrajectory, t: float) -> np.ndarray:
    """Ego -> global (4, 4) at time t."""
    xy, yaw = ego.pose(t)
    return transform_matrix([*xy, 0.0], Quaternion(axis=[0, 0, 1], angle=float(yaw)))


def _sweep(objects: SceneObjects, seed: int, ego: EgoTrajectory = ROAD, t: float = 0.0):
    """One cpu-scale sweep at time t: (points (P, 5), global xyz (P, 3), object index (P,))."""
    ego_to_global = _pose(ego, t)
    lidar_to_global = ego_to_global @ _LIDAR_TO_EGO
    sweep = simulate_sweep(lidar_to_global, ego_to_global, objects, t, ego, 400,
                           np.random.default_rng(seed))
    xyz = sweep.points[:, :3].astype(np.float64) @ lidar_to_global[:3, :3].T + \
        lidar_to_global[:3, 3]
    return sweep.points, xyz, sweep.object_index


def _one(name: str, xy: tuple[float, float], yaw: float) -> SceneObjects:
    return SceneObjects([name], np.array([MEAN_SIZE[name]]), np.array([xy]), np.array([yaw]),
                        np.zeros((1, 2)))


def test_every_shape_fills_its_box_and_keeps_glass_off_the_centre():
    for name, shape in SHAPES.items():
        parts = np.asarray(shape.parts)
        assert (parts[:, 0] >= [-0.5, -0.5, 0]).all() and (parts[:, 1] <= [0.5, 0.5, 1]).all()
        # The union touches all six faces: the annotated box stays the tight box.
        np.testing.assert_allclose(parts[:, 0].min(0), [-0.5, -0.5, 0], err_msg=name)
        np.testing.assert_allclose(parts[:, 1].max(0), [0.5, 0.5, 1], err_msg=name)
        # The box centre is inside a part, and no glass reaches down to it (the camera
        # check of the class colour at a box's centre relies on it).
        assert any(np.all((p[0] < [0, 0, 0.5]) & ([0, 0, 0.5] < p[1])) for p in parts), name
        # Below 0.55 glass is only on the sides between 0.3 and 0.47 from the middle (a
        # bus door): never where a ray to the box centre enters.
        for low, high in shape.glass:
            assert low[2] > 0.55 or (0.3 <= min(abs(low[0]), abs(high[0])) and
                                     max(abs(low[0]), abs(high[0])) < 0.47), (name, low)
        low, high = part_bounds(name, np.array(MEAN_SIZE[name]), 0.04, 0.1)
        half = np.array(MEAN_SIZE[name]) / 2
        assert (low[:, :2] >= -half[:2] + 0.04 - 1e-12).all() and \
            (high <= half - 0.04 + 1e-12).all()
    assert SHAPES["bicycle"] is SHAPES["motorcycle"]     # the twins differ only in colour
    assert len(SHAPES["car"].glass) and not SHAPES["pedestrian"].glass


@pytest.mark.parametrize("name", VEHICLES)
def test_vehicle_returns_differ_between_yaw_and_yaw_plus_pi(name):
    yaw, xy = 0.7, _NEAR[name]
    at_yaw = _sweep(_one(name, xy, yaw), seed=3)
    turned = _sweep(_one(name, xy, yaw + np.pi), seed=3)
    mine, other = at_yaw[0][at_yaw[2] == 0], turned[0][turned[2] == 0]
    assert len(mine) > 100 and len(other) > 100
    # In the object's frame the two clouds are not each other's half-turn.
    size = np.array(MEAN_SIZE[name])
    centre = np.array([*xy, size[2] / 2])
    a = box_fractions(at_yaw[1][at_yaw[2] == 0], centre, size, yaw)
    b = box_fractions(turned[1][turned[2] == 0], centre, size, yaw + np.pi)
    hist = [np.histogram2d(f[:, 0], f[:, 2], bins=[8, 6], range=[[-0.5, 0.5], [0, 1]])[0]
            for f in (a, b)]
    assert np.abs(hist[0] / len(a) - hist[1] / len(b)).sum() > 0.2


def test_a_plain_box_still_gives_the_same_returns_at_yaw_plus_pi():
    at_yaw = _sweep(_one("barrier", (9.0, 5.0), 0.7), seed=3)[0]
    turned = _sweep(_one("barrier", (9.0, 5.0), 0.7 + np.pi), seed=3)[0]
    assert at_yaw.shape == turned.shape
    np.testing.assert_allclose(at_yaw, turned, atol=1e-3)


def test_vehicle_sweeps_are_deterministic_given_the_seed():
    objects = _one("car", (9.0, 5.0), 0.7)
    first, second = _sweep(objects, seed=11)[0], _sweep(objects, seed=11)[0]
    assert first.tobytes() == second.tobytes()


# ----- front / back from the LiDAR alone: a measurement over generated scenes -----

_BINS = (8, 6)       # along x (rear -> front), height


def _features(fractions: np.ndarray, intensity: np.ndarray, name: str, sensor_in_front: bool
              ) -> np.ndarray:
    """Occupancy of (along, height) cells and of bright (reflector) returns along the box,
    in the block of the view (sensor in front of / behind the box's middle)."""
    cells = np.histogram2d(fractions[:, 0], fractions[:, 2], bins=_BINS,
                           range=[[-0.5, 0.5], [0, 1]])[0] > 0
    bright = fractions[intensity > 2.2 * CLASS_INTENSITY[name], 0]
    lights = np.histogram(bright, bins=_BINS[0], range=(-0.5, 0.5))[0] > 0
    block = np.concatenate([cells.ravel(), lights]).astype(np.float64)
    out = np.zeros((2, block.size))
    out[int(sensor_in_front)] = block
    return out.ravel()


def _vehicle_views(scenes: int, sweeps: int) -> list[dict]:
    """Every vehicle seen with >= 30 returns in `sweeps` sweeps of `scenes` generated scenes."""
    views = []
    for scene in range(scenes):
        rng = np.random.default_rng([7, scene])
        ego = EgoTrajectory((0.0, 0.0), float(rng.uniform(-3, 3)), float(rng.uniform(5, 10)),
                            0.0)
        times = np.arange(sweeps) * 0.5
        objects = place_objects(ego, times, times, 25, rng)
        for t in times:
            points, xyz, index = _sweep(objects, int(rng.integers(1 << 30)), ego, float(t))
            sensor = (_pose(ego, float(t)) @ _LIDAR_TO_EGO)[:3, 3]
            centres = objects.centres(float(t))
            for i, name in enumerate(objects.names):
                mine = index == i
                if name not in VEHICLES or mine.sum() < 30:
                    continue
                fractions = box_fractions(xyz[mine], centres[i], objects.size[i],
                                          objects.yaw[i])
                seen_from = box_fractions(sensor[None], centres[i], objects.size[i],
                                          objects.yaw[i])[0]
                views.append(dict(name=name, scene=scene, fractions=fractions,
                                  intensity=points[mine, 3], front=bool(seen_from[0] > 0)))
    return views


def _pair(view: dict) -> np.ndarray:
    """Features at the labelled yaw minus those at yaw + pi (points turned, view swapped)."""
    turned = view["fractions"] * [-1, -1, 1]
    return _features(view["fractions"], view["intensity"], view["name"], view["front"]) - \
        _features(turned, view["intensity"], view["name"], not view["front"])


def test_a_linear_probe_tells_front_from_back_on_held_out_scenes():
    """Train a ridge probe per shape on the even scenes, test it on the odd ones: for how
    many vehicles does it prefer the labelled heading to its half-turn?"""
    views = _vehicle_views(scenes=24, sweeps=4)
    shape = {name: ("two_wheeler" if name in ("motorcycle", "bicycle") else name)
             for name in VEHICLES}
    right: dict[str, list[bool]] = {}
    for group in set(shape.values()):
        mine = [v for v in views if shape[v["name"]] == group]
        train = np.array([_pair(v) for v in mine if v["scene"] % 2 == 0])
        weights = np.linalg.solve(train.T @ train + np.eye(train.shape[1]),
                                  train.T @ np.ones(len(train)))
        for view in (v for v in mine if v["scene"] % 2 == 1):
            right.setdefault(view["name"], []).append(bool(_pair(view) @ weights > 0))
    shares = {name: float(np.mean(r)) for name, r in right.items()}
    total = float(np.mean([x for r in right.values() for x in r]))
    print(f"front/back right for {total:.1%} of {sum(map(len, right.values()))} held-out "
          f"vehicle views; per class {shares}")
    assert set(right) == set(VEHICLES)
    assert total >= 0.9
    assert min(shares.values()) >= 0.75, shares


# ----- the camera and the LiDAR agree on where the front is -----

def _camera_and_lidar(name: str, yaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A `name` straight ahead at `yaw`: (object pixels (K, 3), its returns' box fractions
    (P, 3), intensities (P,))."""
    objects = _one(name, (_AHEAD[name], 0.0), yaw)
    calibration = SENSOR_CALIBRATION["CAM_FRONT"]
    camera = transform_matrix(calibration.translation, Quaternion(calibration.rotation))
    intrinsic = scaled_intrinsic("CAM_FRONT", "cpu")
    image = render_camera(camera, intrinsic, 400, 225, objects, 0.0, ROAD).astype(np.float64)
    nothing = SceneObjects([], np.zeros((0, 3)), np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)))
    empty = render_camera(camera, intrinsic, 400, 225, nothing, 0.0, ROAD).astype(np.float64)
    pixels = image[np.abs(image - empty).sum(-1) > 0]
    points, xyz, index = _sweep(objects, seed=5)
    size = np.array(MEAN_SIZE[name])
    fractions = box_fractions(xyz[index == 0], np.array([_AHEAD[name], 0.0, size[2] / 2]),
                              size, yaw)
    return pixels, fractions, points[index == 0, 3]


def _glass_and_lights(pixels: np.ndarray) -> tuple[float, float]:
    """Shares of dark blue-grey (glass) and of strongly red (rear light) object pixels."""
    chroma = pixels / np.maximum(pixels.sum(-1, keepdims=True), 1)
    glass = (pixels.sum(-1) < 190) & (chroma[:, 2] > 0.36) & (chroma[:, 2] < 0.45) & \
        (chroma[:, 0] < 0.3)
    lights = chroma[:, 0] > 0.85         # the bus's own red is 0.76
    return float(glass.mean()), float(lights.mean())


@pytest.mark.parametrize("name", VEHICLES)
def test_camera_windshield_and_rear_lights_face_where_the_lidar_says(name):
    towards = _camera_and_lidar(name, np.pi)     # front faces the ego
    away = _camera_and_lidar(name, 0.0)          # rear faces the ego
    bright = {}
    for label, (pixels, fractions, intensity) in (("towards", towards), ("away", away)):
        assert len(pixels) > 50 and len(fractions) > 30, label
        bright[label] = float((intensity > 2.2 * CLASS_INTENSITY[name]).mean())
    glass_towards, lights_towards = _glass_and_lights(towards[0])
    glass_away, lights_away = _glass_and_lights(away[0])
    # Rear lights: red in the camera and retro-reflective in the LiDAR, on the same side.
    assert lights_away > 0.01 and lights_towards < 0.002
    assert bright["away"] > 0.02 and bright["towards"] < 0.005
    if name in WITH_WINDSHIELD:
        # The windshield: glass in the camera where the LiDAR's front face is sparse.
        assert glass_towards > 0.05 and glass_away < 0.01
        # Returns in the windshield's height band: the glass in front, the solid cabin,
        # cab or body at the rear.
        band = [int(((f[:, 2] > 0.62) & (f[:, 2] < 0.76)).sum()) for f in
                (towards[1], away[1])]
        assert band[0] < 0.5 * band[1], band


def test_generator_records_its_version(tmp_path: Path):
    summary = make_synthetic_nuscenes(tmp_path, 1, 1, seed=3, verbose=False)
    record = json.loads((tmp_path / GENERATOR_JSON).read_text())
    assert record == {"generator_version": GENERATOR_VERSION, "version": "v1.0-mini",
                      "scale": "cpu", "seed": 3, "scenes": 1, "samples_per_scene": 1}
    assert summary["generator_version"] == GENERATOR_VERSION >= 2


def test_check_data_from_an_older_generator_is_regenerated(tmp_path: Path, monkeypatch):
    from interlace.checks import driving as check
    from interlace.domains.driving.data import gt_paste, info_creation, info_files, synthetic

    made = []
    monkeypatch.setattr(synthetic, "make_synthetic_nuscenes",
                        lambda root, *args, **kwargs: made.append(root))
    monkeypatch.setattr(info_creation, "create_nuscenes_infos",
                        lambda *args, **kwargs: {"train": {"path": "x"}})
    monkeypatch.setattr(gt_paste, "create_groundtruth_database", lambda *args, **kwargs: None)
    monkeypatch.setattr(info_files, "load_info_file", lambda path: ({}, []))
    data = dict(root=str(tmp_path), scenes=2, samples_per_scene=3, version="v1.0-trainval",
                seed=0, max_sweeps=3)
    old = {k: v for k, v in data.items() if k != "root"}      # a stamp from version 1
    (tmp_path / "check_data.json").write_text(json.dumps(old))
    result = check.prepare_data(data)
    assert made == [tmp_path] and result["generator_version"] == GENERATOR_VERSION
    check.prepare_data(data)                                   # now current: reused
    assert made == [tmp_path]
