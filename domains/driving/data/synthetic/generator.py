"""`make_synthetic_nuscenes`: write a small nuScenes-format database that the devkit loads.

Per scene: the ego drives a straight or gently curving road at 5-10 m/s; LIDAR_TOP sweeps
at 20 Hz (``sweeps/``) with every 10th one a key frame (``samples/``, 2 Hz), the first key
frame preceded by a few lead-in sweeps; six camera JPEGs per key frame, each taken when the
spinning LiDAR passes its view (a few ms off the key frame) with its own ego pose. Objects
of all 10 detection classes move at constant velocity, so ``NuScenes.box_velocity`` returns
exactly the velocity they were given. Annotations (not for v1.0-test) cover the key frames
where the object is inside its class's evaluation range and hit by at least one LiDAR
return; ``num_lidar_pts`` counts the returns of that key-frame sweep inside the box.

Tables are written last, so an interrupted run leaves no loadable (half) database.
``synthetic_truth.json`` at the root lists every object's class, size and velocity;
``synthetic_generator.json`` records `GENERATOR_VERSION` and the arguments. The version
changes whenever the same seed gives different data (version 2: vehicles got a front and
a back, :mod:`.vehicle_shapes`), so that a caller that reuses a generated set (the
driving check's ``prepare_data``) regenerates it rather than mixing it with newer sets.
"""
from __future__ import annotations

import io
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..nuscenes_names import CAMERAS, CATEGORY_OF_CLASS, LIDAR, attribute_for
from .camera_rendering import render_camera
from .lidar_simulation import AZIMUTH_STEPS, count_points_in_boxes, simulate_sweep
from .road_and_ego import EgoTrajectory
from .scene_names import scene_names
from .scene_objects import SceneObjects, place_objects
from .sensor_rig import IMAGE_SIZE, SENSOR_CALIBRATION, camera_trigger_offset_us, \
    quaternion_to_matrix, scaled_intrinsic, yaw_quaternion
from .tables import TABLE_NAMES, link_chain, make_token, static_tables, visibility_token, \
    write_bytes_atomic, write_json_atomic

__all__ = ["make_synthetic_nuscenes", "TRUTH_JSON", "GENERATOR_JSON", "GENERATOR_VERSION",
           "SWEEPS_PER_SAMPLE", "LEAD_IN_SWEEPS"]

TRUTH_JSON = "synthetic_truth.json"
GENERATOR_JSON = "synthetic_generator.json"
# 1: box-shaped objects; 2: vehicles with a front and a back (shapes, glass, reflectors).
GENERATOR_VERSION = 2
SWEEPS_PER_SAMPLE = 10            # 20 Hz LiDAR, 2 Hz key frames
LEAD_IN_SWEEPS = 4                # sweeps before a scene's first key frame
SWEEP_PERIOD_US = 50_000
FIRST_TIMESTAMP_US = 1_532_402_927_647_951   # a real nuScenes LiDAR time (2018-07-24)
# (location, vehicle prefix of the log name, UTC offset in hours)
LOCATIONS = (("singapore-onenorth", "n015", 8), ("boston-seaport", "n008", -4),
             ("singapore-queenstown", "n015", 8), ("singapore-hollandvillage", "n015", 8))


def make_synthetic_nuscenes(out: str | Path, scenes: int, samples_per_scene: int, *,
                            version: str = "v1.0-mini", scale: str = "cpu", seed: int = 0,
                            verbose: bool = True) -> dict[str, Any]:
    """Write `scenes` scenes of `samples_per_scene` key frames under `out`; return a summary.

    The summary has ``root``, ``version``, ``scale``, ``generator_version``, ``scenes``
    (name, split, token, samples, objects, annotations each), ``splits`` (split -> scene
    names) and totals.
    Raises ValueError for bad counts, an unknown version / scale, or more scenes than the
    version has official names.
    """
    if scenes < 1 or samples_per_scene < 1:
        raise ValueError(f"need at least 1 scene and 1 sample per scene, got {scenes} scenes "
                         f"x {samples_per_scene} samples")
    if scale not in IMAGE_SIZE:
        raise ValueError(f"unknown scale {scale!r}: use one of {list(IMAGE_SIZE)}")
    names = scene_names(version, scenes, seed)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tables: dict[str, list[dict]] = {name: [] for name in TABLE_NAMES}
    tables.update(static_tables(seed, {c: s.modality for c, s in SENSOR_CALIBRATION.items()}))
    truth: dict[str, Any] = {}
    summary_scenes = []
    for index, (name, split) in enumerate(names):
        scene_start = time.perf_counter()
        stats = _write_scene(root, tables, truth, index, name, version, scale, seed,
                             samples_per_scene)
        summary_scenes.append({"name": name, "split": split, **stats})
        if verbose:
            print(f"  [{index + 1}/{len(names)}] {name} ({split}): {samples_per_scene} samples,"
                  f" {stats['sweeps']} LiDAR sweeps, {stats['mean_points']:.0f} points per key"
                  f" frame, {stats['objects']} objects, {stats['annotations']} annotations "
                  f"({time.perf_counter() - scene_start:.1f} s)", flush=True)
    _add_maps(root, tables, seed)
    write_json_atomic(root / TRUTH_JSON, truth)
    write_json_atomic(root / GENERATOR_JSON, {
        "generator_version": GENERATOR_VERSION, "version": version, "scale": scale,
        "seed": seed, "scenes": scenes, "samples_per_scene": samples_per_scene})
    for table, records in tables.items():    # last: only a complete database is loadable
        write_json_atomic(root / version / f"{table}.json", records)
    splits: dict[str, list[str]] = {}
    for scene in summary_scenes:
        splits.setdefault(scene["split"], []).append(scene["name"])
    return {"root": str(root), "version": version, "scale": scale, "seed": seed,
            "generator_version": GENERATOR_VERSION,
            "scenes": summary_scenes, "splits": splits,
            "samples": len(tables["sample"]), "sample_data": len(tables["sample_data"]),
            "annotations": len(tables["sample_annotation"]),
            "mean_points_per_key_frame": float(np.mean([s["mean_points"]
                                                        for s in summary_scenes])),
            "seconds": time.perf_counter() - start}


def _pose_matrix(translation: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """4x4 rigid transform from a translation (3,) and rotation matrix (3, 3)."""
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, translation
    return matrix


def _ego_pose(ego: EgoTrajectory, t: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Ego translation (3,), yaw and the ego -> global 4x4 at scene time `t` (s)."""
    xy, yaw = ego.pose(t)
    translation = np.array([xy[0], xy[1], 0.0])
    cos, sin = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    return translation, float(yaw), _pose_matrix(translation, rotation)


def _write_scene(root: Path, tables: dict[str, list[dict]], truth: dict[str, Any], index: int,
                 name: str, version: str, scale: str, seed: int, num_samples: int
                 ) -> dict[str, Any]:
    """Simulate one scene, write its files and append its records to `tables`."""
    rng = np.random.default_rng([seed, index])
    location, vehicle, utc_offset = LOCATIONS[int(rng.integers(len(LOCATIONS)))]
    ts0 = FIRST_TIMESTAMP_US + index * 7_200_000_000 + int(rng.integers(0, 3_600_000_000))
    local = datetime.fromtimestamp(ts0 / 1e6, timezone(timedelta(hours=utc_offset)))
    logfile = f"{vehicle}-{local:%Y-%m-%d-%H-%M-%S%z}"
    token = lambda *key: make_token(seed, index, *key)  # noqa: E731  (scene-local tokens)
    log_token = token("log")
    tables["log"].append({"token": log_token, "logfile": logfile, "vehicle": vehicle,
                          "date_captured": f"{local:%Y-%m-%d}", "location": location})
    calibration = {}
    for channel, sensor in SENSOR_CALIBRATION.items():
        intrinsic = scaled_intrinsic(channel, scale).tolist() if sensor.intrinsic else []
        tables["calibrated_sensor"].append({
            "token": token("calibrated_sensor", channel),
            "sensor_token": make_token(seed, "sensor", channel),
            "translation": list(sensor.translation), "rotation": list(sensor.rotation),
            "camera_intrinsic": intrinsic})
        calibration[channel] = _pose_matrix(np.array(sensor.translation),
                                            quaternion_to_matrix(sensor.rotation))

    speed = rng.uniform(5.0, 10.0)
    yaw_rate = 0.0 if rng.random() < 0.5 else rng.choice([-1, 1]) * speed / rng.uniform(150, 400)
    ego = EgoTrajectory(start=(float(rng.uniform(300, 1500)), float(rng.uniform(300, 1500))),
                        heading=float(rng.uniform(-np.pi, np.pi)), speed=float(speed),
                        yaw_rate=float(yaw_rate))
    steps = np.arange(-LEAD_IN_SWEEPS, (num_samples - 1) * SWEEPS_PER_SAMPLE + 1)
    jitter = rng.integers(-400, 401, len(steps))
    jitter[steps == 0] = 0
    timestamps = ts0 + steps * SWEEP_PERIOD_US + jitter                       # (T,) us
    is_key = steps % SWEEPS_PER_SAMPLE == 0
    times = (timestamps - ts0) / 1e6
    objects = place_objects(ego, times[is_key], times, int(rng.integers(15, 26)), rng)
    sample_tokens = [token("sample", k) for k in range(num_samples)]

    key_counts, key_visibility, key_ego_xy, points_per_key = [], [], [], []
    lidar_records: list[dict] = []
    for step, timestamp, t, key in zip(steps, timestamps, times, is_key):
        translation, yaw, ego_to_global = _ego_pose(ego, t)
        sweep = simulate_sweep(ego_to_global @ calibration[LIDAR], ego_to_global, objects, t,
                               ego, AZIMUTH_STEPS[scale], rng)
        folder = "samples" if key else "sweeps"
        filename = f"{folder}/{LIDAR}/{logfile}__{LIDAR}__{timestamp}.pcd.bin"
        write_bytes_atomic(root / filename, sweep.points.tobytes())
        pose_token = token("ego_pose", LIDAR, step)
        tables["ego_pose"].append({"token": pose_token, "timestamp": int(timestamp),
                                   "rotation": yaw_quaternion(yaw),
                                   "translation": translation.tolist()})
        sample_index = min(max(int(np.ceil(step / SWEEPS_PER_SAMPLE)), 0), num_samples - 1)
        lidar_records.append(_sample_data(token("sample_data", LIDAR, step),
                                          sample_tokens[sample_index], pose_token,
                                          token("calibrated_sensor", LIDAR), int(timestamp),
                                          filename, bool(key), 0, 0))
        if key:
            # Count from the stored float32 values, as any reader of the file will.
            lidar_to_global = ego_to_global @ calibration[LIDAR]
            global_xyz = sweep.points[:, :3].astype(np.float64) @ lidar_to_global[:3, :3].T + \
                lidar_to_global[:3, 3]
            key_counts.append(count_points_in_boxes(global_xyz, objects.centres(t),
                                                    objects.size, objects.yaw))
            key_visibility.append(sweep.visible_fraction)
            key_ego_xy.append(translation[:2])
            points_per_key.append(len(sweep.points))
    link_chain(lidar_records)
    tables["sample_data"] += lidar_records

    width, height = IMAGE_SIZE[scale]
    camera_records: dict[str, list[dict]] = {channel: [] for channel in CAMERAS}
    key_timestamps = timestamps[is_key]
    for k, key_timestamp in enumerate(key_timestamps):
        for channel in CAMERAS:
            timestamp = int(key_timestamp) + camera_trigger_offset_us(channel)
            t = (timestamp - ts0) / 1e6
            translation, yaw, ego_to_global = _ego_pose(ego, t)
            image = render_camera(ego_to_global @ calibration[channel],
                                  scaled_intrinsic(channel, scale), width, height, objects, t, ego)
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=92)
            filename = f"samples/{channel}/{logfile}__{channel}__{timestamp}.jpg"
            write_bytes_atomic(root / filename, buffer.getvalue())
            pose_token = token("ego_pose", channel, k)
            tables["ego_pose"].append({"token": pose_token, "timestamp": timestamp,
                                       "rotation": yaw_quaternion(yaw),
                                       "translation": translation.tolist()})
            camera_records[channel].append(_sample_data(
                token("sample_data", channel, k), sample_tokens[k], pose_token,
                token("calibrated_sensor", channel), timestamp, filename, True, width, height))
    for records in camera_records.values():
        link_chain(records)
        tables["sample_data"] += records

    samples = [{"token": sample_tokens[k], "timestamp": int(key_timestamps[k]),
                "scene_token": token("scene")} for k in range(num_samples)]
    link_chain(samples)
    tables["sample"] += samples
    num_annotations = 0
    if version != "v1.0-test":         # the real test set publishes no annotations
        num_annotations = _add_annotations(tables, objects, np.array(key_counts),
                                       np.array(key_visibility), np.array(key_ego_xy),
                                       times[is_key], sample_tokens, token, seed)
    tables["scene"].append({
        "token": token("scene"), "log_token": log_token, "nbr_samples": num_samples,
        "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1],
        "name": name, "description": f"Synthetic; {len(objects)} objects; ego {speed:.1f} m/s "
                                     f"on a {'straight' if yaw_rate == 0 else 'curving'} road"})
    truth[name] = {token("instance", i): {
        "name": objects.names[i], "size_lwh": objects.size[i].tolist(),
        "yaw": float(objects.yaw[i]), "velocity": objects.velocity[i].tolist(),
        "xy_at_first_sample": objects.xy0[i].tolist()} for i in range(len(objects))}
    return {"token": token("scene"), "samples": num_samples, "sweeps": len(lidar_records),
            "objects": len(objects), "annotations": num_annotations, "location": location,
            "mean_points": float(np.mean(points_per_key))}


def _sample_data(token: str, sample_token: str, ego_pose_token: str, calibrated_token: str,
                 timestamp: int, filename: str, key: bool, width: int, height: int) -> dict:
    """One sample_data record (``prev`` / ``next`` are set by `link_chain`)."""
    return {"token": token, "sample_token": sample_token, "ego_pose_token": ego_pose_token,
            "calibrated_sensor_token": calibrated_token, "timestamp": timestamp,
            "fileformat": "jpg" if filename.endswith(".jpg") else "pcd", "is_key_frame": key,
            "height": height, "width": width, "filename": filename, "prev": "", "next": ""}


def _add_annotations(tables: dict[str, list[dict]], objects: SceneObjects, counts: np.ndarray,
                     visibility: np.ndarray, ego_xy: np.ndarray, key_times: np.ndarray,
                     sample_tokens: list[str], token: Any, seed: int) -> int:
    """Append instance and sample_annotation records; counts / visibility: (K, N)."""
    speeds = objects.speed()
    total = 0
    for i, name in enumerate(objects.names):
        centres = np.stack([objects.centres(t)[i] for t in key_times])          # (K, 3)
        # Every key frame in which the LiDAR sees the object is annotated, at any range
        # (DetectionEval itself drops boxes beyond the class range): an object with
        # points but no box would charge a correct detector a false positive. Frames
        # with no points are left out (so an instance's chain may skip frames, as
        # real ones do), which keeps the GT-as-predictions score at 1.0 without
        # relying on the valid flag.
        seen = np.flatnonzero(counts[:, i] > 0)
        if len(seen) == 0:
            continue
        attribute = attribute_for(name, float(speeds[i]))
        attribute_tokens = [make_token(seed, "attribute", attribute)] if attribute else []
        records = [{
            "token": token("sample_annotation", i, k), "sample_token": sample_tokens[k],
            "instance_token": token("instance", i),
            "visibility_token": visibility_token(float(visibility[k, i])),
            "attribute_tokens": attribute_tokens, "translation": centres[k].tolist(),
            "size": [float(objects.size[i, 1]), float(objects.size[i, 0]),
                     float(objects.size[i, 2])],
            "rotation": yaw_quaternion(float(objects.yaw[i])),
            "num_lidar_pts": int(counts[k, i]), "num_radar_pts": 0}
            for k in seen]
        link_chain(records)
        tables["sample_annotation"] += records
        tables["instance"].append({
            "token": token("instance", i),
            "category_token": make_token(seed, "category", CATEGORY_OF_CLASS[name]),
            "nbr_annotations": len(records), "first_annotation_token": records[0]["token"],
            "last_annotation_token": records[-1]["token"]})
        total += len(records)
    return total


def _add_maps(root: Path, tables: dict[str, list[dict]], seed: int) -> None:
    """One small semantic-prior PNG per location used, listing that location's logs."""
    logs_by_location: dict[str, list[str]] = {}
    for log in tables["log"]:
        logs_by_location.setdefault(log["location"], []).append(log["token"])
    for location, log_tokens in sorted(logs_by_location.items()):
        map_token = make_token(seed, "map", location)
        filename = f"maps/{map_token}.png"
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[24:40] = 255            # a road across the (tiny) map: drivable prior
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        write_bytes_atomic(root / filename, buffer.getvalue())
        tables["map"].append({"token": map_token, "log_tokens": log_tokens,
                              "category": "semantic_prior", "filename": filename})
