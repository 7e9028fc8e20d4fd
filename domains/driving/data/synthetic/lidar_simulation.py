"""Ray-cast LiDAR sweeps like the nuScenes HDL-32E against the ground and the object boxes.

Each sweep casts a (32 beams x A azimuths) grid of rays from the LIDAR_TOP pose at the
sweep's own timestamp; the nearest hit among the ground plane (z = 0) and all boxes wins,
so occlusion is real. Density falls with range from the angular sampling alone; on top,
returns drop out with a probability that rises with range, and the range gets ~1 cm noise.

Objects are hit on their shape (:mod:`.vehicle_shapes`: vehicles have a bonnet, a cabin or a
cargo box, glass and rear reflectors, so they look different at yaw and at yaw + pi),
whose outer faces sit 4 cm inside the annotated box (parts on the ground reach 10 cm below
it), so every object return lies inside its annotated box with margin to spare: counting
"points in box" then does not hinge on float rounding at the faces. Ground returns are
kept at least 5 mm off z = 0 for the same reason (the box bottoms). A ray that hits glass
returns with probability ``GLASS_RETURN_PROBABILITY`` only (it is lost otherwise);
intensity is the class's, scaled by the surface (weak glass and tyres, bright reflectors).

Stored points are ``float32 (P, 5)``: x, y, z in the LIDAR_TOP frame, intensity (0-255),
ring index (0 = lowest beam), as in nuScenes ``.pcd.bin`` files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .road_and_ego import ASPHALT, GRASS, LANE_MARK, SIDEWALK, EgoTrajectory, ground_kind
from .scene_objects import SceneObjects
from .sensor_rig import EGO_EXTENT, LIDAR_BEAM_ELEVATIONS_DEG, LIDAR_MAX_RANGE
from .vehicle_shapes import GLASS, GLASS_RETURN_PROBABILITY, SURFACE_INTENSITY_FACTOR, \
    box_fractions, part_bounds, ray_parts_distance, rays_in_box_frame, surface_kind

__all__ = ["LidarSweep", "AZIMUTH_STEPS", "simulate_sweep", "count_points_in_boxes",
           "ray_box_distance"]

# Azimuth columns per revolution: ~10k returns (cpu) and ~34k (nuScenes' average) per sweep.
AZIMUTH_STEPS: dict[str, int] = {"cpu": 400, "nuscenes": 1340}
_SOLID_INSET = 0.04
_GROUND_CLEARANCE = 0.005
_RANGE_NOISE = 0.01
_MIN_RANGE = 1.0
# Mean return intensity of a body surface per class (glass, tyres and reflectors scale it,
# see vehicle_shapes); the two twin classes share theirs on purpose.
CLASS_INTENSITY: dict[str, float] = {
    "car": 24.0, "truck": 28.0, "construction_vehicle": 32.0, "bus": 30.0, "trailer": 22.0,
    "barrier": 45.0, "motorcycle": 18.0, "bicycle": 18.0, "pedestrian": 12.0,
    "traffic_cone": 60.0}
_GROUND_INTENSITY = np.zeros(4)
_GROUND_INTENSITY[[ASPHALT, LANE_MARK, SIDEWALK, GRASS]] = (6.0, 40.0, 14.0, 9.0)


@dataclass
class LidarSweep:
    """One simulated sweep.

    points: (P, 5) float32 in the sensor frame; object_index: (P,) int, -1 for ground;
    visible_fraction: (N,) share of each object's rays that reach it unoccluded (nan when
    no ray would reach it at all).
    """

    points: np.ndarray
    object_index: np.ndarray
    visible_fraction: np.ndarray


def ray_box_distance(origin: np.ndarray, directions: np.ndarray, centre: np.ndarray,
                     yaw: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Distance along unit rays to a yawed box, inf where missed (slab test).

    origin: (3,) global; directions: (..., 3) global unit vectors; centre: (3,);
    low / high: (3,) box extent in its own frame (x along the heading). Returns (...).
    """
    local_origin, local_dirs = rays_in_box_frame(origin, directions, centre, yaw)
    t_near = t_far = None
    # Per axis rather than reductions over a length-3 axis: several times faster in numpy.
    for axis in range(3):
        component = local_dirs[axis]
        with np.errstate(divide="ignore"):
            inverse = 1.0 / np.where(np.abs(component) < 1e-12, 1e-12, component)
        t1 = (float(low[axis]) - local_origin[axis]) * inverse
        t2 = (float(high[axis]) - local_origin[axis]) * inverse
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = near if t_near is None else np.maximum(t_near, near)
        t_far = far if t_far is None else np.minimum(t_far, far)
    hit = (t_near <= t_far) & (t_near > 0)
    return np.where(hit, t_near, np.inf)


def simulate_sweep(sensor_to_global: np.ndarray, ego_to_global: np.ndarray,
                   objects: SceneObjects, t: float, road: EgoTrajectory, azimuth_steps: int,
                   rng: np.random.Generator) -> LidarSweep:
    """Cast one sweep from the sensor pose `sensor_to_global` (4, 4) at scene time `t` (s)."""
    rotation, origin = sensor_to_global[:3, :3], sensor_to_global[:3, 3]
    elevation = np.deg2rad(LIDAR_BEAM_ELEVATIONS_DEG)                       # (B,)
    step = 2 * np.pi / azimuth_steps
    azimuth = -np.pi + step * np.arange(azimuth_steps)                      # (A,)
    dirs_sensor = np.stack(np.broadcast_arrays(
        np.cos(elevation)[:, None] * np.cos(azimuth), np.cos(elevation)[:, None] * np.sin(azimuth),
        np.sin(elevation)[:, None]), axis=-1)                               # (B, A, 3)
    dirs = dirs_sensor @ rotation.T                                         # global

    with np.errstate(divide="ignore"):
        best = np.where(dirs[..., 2] < 0, -origin[2] / dirs[..., 2], np.inf)
    best = np.where(best <= LIDAR_MAX_RANGE, best, np.inf)
    best_index = np.full(best.shape, -1, dtype=np.int64)

    centres = objects.centres(t)
    reachable = np.zeros(len(objects), dtype=np.int64)
    for i in range(len(objects)):
        columns = _azimuth_columns(centres[i], objects.size[i], objects.yaw[i], rotation,
                                   origin, step, azimuth_steps)
        if columns.size == 0:
            continue
        low, high = part_bounds(objects.names[i], objects.size[i], _SOLID_INSET, 0.1)
        distance, _ = ray_parts_distance(origin, dirs[:, columns], centres[i], objects.yaw[i],
                                         low, high)
        distance[distance > LIDAR_MAX_RANGE] = np.inf
        reachable[i] = np.isfinite(distance).sum()
        sub_best = best[:, columns]
        closer = distance < sub_best
        best[:, columns] = np.where(closer, distance, sub_best)
        best_index[:, columns] = np.where(closer, i, best_index[:, columns])
    visible = np.bincount(best_index[best_index >= 0], minlength=len(objects))
    with np.errstate(invalid="ignore", divide="ignore"):
        visible_fraction = np.where(reachable > 0, visible / reachable, np.nan)

    ring = np.broadcast_to(np.arange(len(elevation))[:, None], best.shape)
    # Azimuth-major order, as a spinning scanner writes them.
    best, best_index, ring = best.T.ravel(), best_index.T.ravel(), ring.T.ravel()
    dirs, dirs_sensor = dirs.transpose(1, 0, 2).reshape(-1, 3), \
        dirs_sensor.transpose(1, 0, 2).reshape(-1, 3)
    keep = np.isfinite(best) & (best > _MIN_RANGE)
    # Weak far returns are lost more often: ~3 % dropout near, ~40 % at 70 m.
    keep &= rng.random(best.shape) > 0.03 + 0.37 * (np.minimum(best, LIDAR_MAX_RANGE) /
                                                     LIDAR_MAX_RANGE) ** 2
    distance, index, ring = best[keep], best_index[keep], ring[keep]
    dirs, dirs_sensor = dirs[keep], dirs_sensor[keep]
    # The surface is told from the exact hit, before the range noise moves it off the face.
    surface = _surface_kinds(origin + distance[:, None] * dirs, index, objects, centres)
    glass_lost = (surface == GLASS) & (rng.random(distance.shape) >= GLASS_RETURN_PROBABILITY)
    distance, index, ring, dirs, dirs_sensor, surface = (
        distance[~glass_lost], index[~glass_lost], ring[~glass_lost], dirs[~glass_lost],
        dirs_sensor[~glass_lost], surface[~glass_lost])
    distance = distance + np.clip(rng.normal(0, _RANGE_NOISE, distance.shape), -0.02, 0.02)

    ground = index < 0
    z = origin[2] + distance * dirs[:, 2]
    too_flat = ground & (np.abs(z) < _GROUND_CLEARANCE)
    target = np.where(z >= 0, _GROUND_CLEARANCE, -_GROUND_CLEARANCE)
    distance = np.where(too_flat, (target - origin[2]) / dirs[:, 2], distance)
    # Noise and the clearance nudge can push a grazing far return past the maximum range.
    inside = distance <= LIDAR_MAX_RANGE
    distance, index, ring, dirs, dirs_sensor, ground, surface = (
        distance[inside], index[inside], ring[inside], dirs[inside], dirs_sensor[inside],
        ground[inside], surface[inside])

    global_xyz = origin + distance[:, None] * dirs
    intensity = _intensity(global_xyz, index, ground, surface, objects, road, rng)
    points = np.concatenate([distance[:, None] * dirs_sensor, intensity[:, None],
                             ring[:, None].astype(np.float64)], axis=1).astype(np.float32)
    on_ego = _inside_ego(global_xyz, ego_to_global)
    return LidarSweep(points[~on_ego], index[~on_ego], visible_fraction)


def count_points_in_boxes(points_global: np.ndarray, centres: np.ndarray, sizes: np.ndarray,
                          yaws: np.ndarray) -> np.ndarray:
    """Points (P, 3) inside each box (centre (N, 3), size (N, 3) l w h, yaw (N,)): (N,)."""
    counts = np.zeros(len(centres), dtype=np.int64)
    for i in range(len(centres)):
        rel = points_global - centres[i]
        along = rel[:, 0] * np.cos(yaws[i]) + rel[:, 1] * np.sin(yaws[i])
        across = -rel[:, 0] * np.sin(yaws[i]) + rel[:, 1] * np.cos(yaws[i])
        half = sizes[i] / 2
        counts[i] = np.count_nonzero((np.abs(along) <= half[0]) & (np.abs(across) <= half[1]) &
                                     (np.abs(rel[:, 2]) <= half[2]))
    return counts


def _azimuth_columns(centre: np.ndarray, size: np.ndarray, yaw: float, rotation: np.ndarray,
                     origin: np.ndarray, step: float, azimuth_steps: int) -> np.ndarray:
    """Indices of the azimuth columns whose rays can reach the box (its corners' span)."""
    corners = _box_corners(centre, size, yaw)                               # (8, 3) global
    local = (corners - origin) @ rotation                                   # sensor frame
    if np.linalg.norm(local[:, :2], axis=1).min() > LIDAR_MAX_RANGE + 1:
        return np.zeros(0, dtype=np.int64)
    angles = np.arctan2(local[:, 1], local[:, 0])
    middle = np.arctan2(local[:, 1].mean(), local[:, 0].mean())
    offset = (angles - middle + np.pi) % (2 * np.pi) - np.pi
    first = int(np.floor((middle + offset.min() + np.pi) / step))
    last = int(np.ceil((middle + offset.max() + np.pi) / step))
    return np.arange(first, last + 1) % azimuth_steps


def _box_corners(centre: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    """The 8 corners (8, 3) of a yawed box."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    local = signs * size / 2
    cos, sin = np.cos(yaw), np.sin(yaw)
    rotated = np.stack([local[:, 0] * cos - local[:, 1] * sin,
                        local[:, 0] * sin + local[:, 1] * cos, local[:, 2]], axis=1)
    return rotated + centre


def _surface_kinds(global_xyz: np.ndarray, index: np.ndarray, objects: SceneObjects,
                   centres: np.ndarray) -> np.ndarray:
    """Surface kind (P,) of each return (`vehicle_shapes.BODY` for the ground)."""
    kind = np.zeros(len(index), dtype=np.int8)
    hit = index >= 0
    if not hit.any():
        return kind
    names = np.array(objects.names)
    fractions = box_fractions(global_xyz[hit], centres[index[hit]], objects.size[index[hit]],
                              objects.yaw[index[hit]])
    kinds = np.zeros(int(hit.sum()), dtype=np.int8)
    for name in np.unique(names[index[hit]]):
        of_class = names[index[hit]] == name
        kinds[of_class] = surface_kind(str(name), fractions[of_class])
    kind[hit] = kinds
    return kind


def _intensity(global_xyz: np.ndarray, index: np.ndarray, ground: np.ndarray,
               surface: np.ndarray, objects: SceneObjects, road: EgoTrajectory,
               rng: np.random.Generator) -> np.ndarray:
    """Return intensity (P,): by ground material, or by the hit object's class and surface
    (kind codes of `vehicle_shapes`)."""
    mean = np.zeros(len(index))
    s, d = road.road_coordinates(global_xyz[ground, :2])
    kind = ground_kind(s, d)
    mean[ground] = _GROUND_INTENSITY[kind]
    class_mean = np.array([CLASS_INTENSITY[name] for name in objects.names] or [0.0])
    mean[~ground] = class_mean[index[~ground]] * SURFACE_INTENSITY_FACTOR[surface[~ground]]
    return np.clip(mean * rng.normal(1.0, 0.25, mean.shape), 0, 255).round()


def _inside_ego(global_xyz: np.ndarray, ego_to_global: np.ndarray) -> np.ndarray:
    """(P,) bool: points within the ego car's own footprint (never kept)."""
    local = (global_xyz - ego_to_global[:3, 3]) @ ego_to_global[:3, :3]
    x_min, x_max, y_min, y_max, height = EGO_EXTENT
    return (local[:, 0] >= x_min) & (local[:, 0] <= x_max) & (local[:, 1] >= y_min) & \
        (local[:, 1] <= y_max) & (local[:, 2] <= height + 0.3)
