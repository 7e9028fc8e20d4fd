"""The annotated objects of a synthetic scene: class, size, constant-velocity motion.

Every scene holds at least one object of each of the 10 detection classes (so any split
with a scene sees all classes), plus a random crowd. Objects sit on the ground (box bottom
at z = 0, the road plane), inside their class's evaluation range of the ego at a reference
key frame, and never overlap each other or the ego car at any sweep of the scene (checked
with oriented rectangles over the whole time grid).

Sizes are the nuScenes class means with about 5 % spread, except that ``bicycle`` and
``motorcycle`` deliberately share one size distribution (between the two real means), one
placement / motion model and one LiDAR intensity: the LiDAR cannot tell them apart, only
the camera's colours can (see ``camera_rendering.CLASS_COLOURS``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nuscenes_names import CLASSES, EVAL_RANGE
from .road_and_ego import LANE_CENTRES, PARKING_CENTRES, ROAD_EDGES, SIDEWALK_BANDS, \
    EgoTrajectory
from .sensor_rig import EGO_EXTENT

__all__ = ["SceneObjects", "MEAN_SIZE", "TWIN_CLASSES", "place_objects", "rectangles_overlap"]

# (length, width, height) in metres.
MEAN_SIZE: dict[str, tuple[float, float, float]] = {
    "car": (4.6, 1.9, 1.7), "truck": (6.9, 2.5, 2.8), "construction_vehicle": (6.4, 2.8, 3.2),
    "bus": (11.0, 2.9, 3.5), "trailer": (12.0, 2.9, 3.9), "barrier": (0.5, 2.5, 1.0),
    # bicycle (1.7, 0.6, 1.3) and motorcycle (2.1, 0.8, 1.5) share the mean of the two.
    "motorcycle": (1.9, 0.7, 1.4), "bicycle": (1.9, 0.7, 1.4),
    "pedestrian": (0.7, 0.7, 1.75), "traffic_cone": (0.4, 0.4, 1.0)}
TWIN_CLASSES = ("bicycle", "motorcycle")   # same geometry, intensity, motion; colour differs
_VEHICLES = ("car", "truck", "construction_vehicle", "bus", "trailer")
_EXTRA_CLASS_WEIGHT = {"car": 0.3, "pedestrian": 0.18, "barrier": 0.1, "traffic_cone": 0.1,
                       "truck": 0.07, "bicycle": 0.05, "motorcycle": 0.05, "bus": 0.05,
                       "trailer": 0.05, "construction_vehicle": 0.05}
_CLEARANCE = 0.3   # metres kept free around every box (and the ego)


@dataclass
class SceneObjects:
    """N objects with constant velocity; positions at scene time t (s) are xy0 + t * velocity.

    names: N class names; size: (N, 3) l, w, h; xy0: (N, 2) global centre at t = 0;
    yaw: (N,) heading (rad, global); velocity: (N, 2) m/s global.
    """

    names: list[str]
    size: np.ndarray
    xy0: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def centres(self, t: float) -> np.ndarray:
        """Box centres (N, 3) at scene time `t`; z = h / 2 (the box stands on z = 0)."""
        xy = self.xy0 + t * self.velocity
        return np.concatenate([xy, self.size[:, 2:3] / 2], axis=1)

    def speed(self) -> np.ndarray:
        """(N,) speed in m/s."""
        return np.linalg.norm(self.velocity, axis=1)


def rectangles_overlap(centre_a: np.ndarray, yaw_a: np.ndarray, half_a: np.ndarray,
                       centre_b: np.ndarray, yaw_b: np.ndarray, half_b: np.ndarray
                       ) -> np.ndarray:
    """Whether oriented rectangles overlap (separating-axis test), broadcast over leading dims.

    centre_*: (..., 2); yaw_*: (...); half_*: (..., 2) half length / half width.
    Returns a bool array of the broadcast leading shape.
    """
    axes_a = np.stack([np.stack([np.cos(yaw_a), np.sin(yaw_a)], -1),
                       np.stack([-np.sin(yaw_a), np.cos(yaw_a)], -1)], -2)   # (..., 2, 2)
    axes_b = np.stack([np.stack([np.cos(yaw_b), np.sin(yaw_b)], -1),
                       np.stack([-np.sin(yaw_b), np.cos(yaw_b)], -1)], -2)
    axes_a, axes_b = np.broadcast_arrays(axes_a, axes_b)
    delta = (centre_b - centre_a)[..., None, :]
    separated = np.zeros(np.broadcast_shapes(delta.shape[:-2], axes_a.shape[:-2]), dtype=bool)
    for axes in (axes_a, axes_b):
        for k in range(2):
            axis = axes[..., k, :][..., None, :]                               # (..., 1, 2)
            ra = (np.abs((axes_a * axis).sum(-1)) * half_a).sum(-1)
            rb = (np.abs((axes_b * axis).sum(-1)) * half_b).sum(-1)
            distance = np.abs((delta * axis).sum(-1))[..., 0]
            separated |= distance > ra + rb
    return ~separated


def _sample_pose(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """Road placement of one object: (lateral d, heading offset, speed).

    The heading offset is relative to the road direction at the object; speed along it.
    """
    if name in _VEHICLES:
        moving_probability = {"car": 0.6, "truck": 0.5, "bus": 0.5}.get(name, 0.3)
        if rng.random() < moving_probability:
            direction = "along" if rng.random() < 0.5 else "oncoming"
            d = rng.choice(LANE_CENTRES[direction]) + rng.normal(0, 0.2)
            top = {"car": 12.0, "truck": 10.0, "bus": 9.0}.get(name, 7.0)
            heading = 0.0 if direction == "along" else np.pi
            return d, heading + rng.normal(0, 0.02), rng.uniform(3.0, top)
        d = rng.choice(PARKING_CENTRES) + rng.normal(0, 0.1)
        heading = 0.0 if d < 0 else np.pi
        if name == "bus":    # a bus waits at the stop in the outer lane: "stopped"
            d = LANE_CENTRES["along"][0] + rng.normal(0, 0.1)
            heading = 0.0
        return d, heading + rng.normal(0, 0.04), 0.0
    if name in TWIN_CLASSES:
        if rng.random() < 0.6:    # ridden at the lane edge
            side = rng.integers(2)
            d = (ROAD_EDGES[0] + 0.9, ROAD_EDGES[1] - 0.9)[side] + rng.normal(0, 0.15)
            return d, (0.0, np.pi)[side] + rng.normal(0, 0.03), rng.uniform(2.5, 8.0)
        # parked on the sidewalk, next to the kerb
        d = (SIDEWALK_BANDS[0][1] - 0.8, SIDEWALK_BANDS[1][0] + 0.8)[rng.integers(2)]
        return d, rng.uniform(-np.pi, np.pi), 0.0
    if name == "pedestrian":
        band = SIDEWALK_BANDS[rng.integers(2)]
        d = rng.uniform(band[0] + 0.5, band[1] - 0.5)
        roll = rng.random()
        if roll < 0.55:      # walking along the sidewalk
            return d, rng.choice([0.0, np.pi]) + rng.normal(0, 0.1), rng.uniform(0.8, 1.8)
        if roll < 0.7:       # crossing the road
            return rng.uniform(ROAD_EDGES[0], ROAD_EDGES[1]), rng.choice([-1, 1]) * np.pi / 2, \
                rng.uniform(1.0, 1.6)
        return d, rng.uniform(-np.pi, np.pi), 0.0
    if name == "barrier":    # long side along the road edge or across a closed parking strip
        d = rng.choice([ROAD_EDGES[0] - 0.5, ROAD_EDGES[1] + 0.5, PARKING_CENTRES[0]])
        return d + rng.normal(0, 0.1), np.pi / 2 + rng.normal(0, 0.05), 0.0
    # traffic_cone: on lane edges and in the parking strips
    d = rng.choice([ROAD_EDGES[0] - 0.3, ROAD_EDGES[1] + 0.3, *PARKING_CENTRES])
    return d + rng.normal(0, 0.2), rng.uniform(-np.pi, np.pi), 0.0


def place_objects(ego: EgoTrajectory, key_times: np.ndarray, sweep_times: np.ndarray,
                  num_extra: int, rng: np.random.Generator) -> SceneObjects:
    """One of each class (near the middle key frame) plus `num_extra` random objects.

    key_times: (K,) key frame times (s); sweep_times: (T,) every LiDAR sweep time (s).
    Each object is inside EVAL_RANGE of the ego at a reference key frame; objects that
    would overlap an earlier one or the ego at any sweep time are drawn again.
    """
    ego_xy, ego_yaw = ego.pose(sweep_times)                                  # (T, 2), (T,)
    x_min, x_max, y_min, y_max, _ = EGO_EXTENT
    ego_centre = ego_xy + np.stack([np.cos(ego_yaw), np.sin(ego_yaw)], -1) * (x_min + x_max) / 2
    ego_half = np.array([(x_max - x_min) / 2, (y_max - y_min) / 2]) + _CLEARANCE
    extra_names = rng.choice(list(_EXTRA_CLASS_WEIGHT), size=num_extra,
                             p=np.array(list(_EXTRA_CLASS_WEIGHT.values())) /
                             sum(_EXTRA_CLASS_WEIGHT.values()))
    wanted = [(name, True) for name in CLASSES] + [(str(n), False) for n in extra_names]
    names, sizes, xy0s, yaws, velocities = [], [], [], [], []
    tracks_xy = np.zeros((0, len(sweep_times), 2))
    for name, guaranteed in wanted:
        for _attempt in range(60):
            size = np.array(MEAN_SIZE[name]) * rng.uniform(0.95, 1.05, 3)
            d, heading_offset, speed = _sample_pose(name, rng)
            limit = EVAL_RANGE[name] * (0.55 if guaranteed else 0.95)
            t_ref = key_times[len(key_times) // 2] if guaranteed else rng.choice(key_times)
            s_ego = ego.speed * t_ref
            s = s_ego + rng.uniform(-limit, limit)
            xy_ref, road_heading = ego.along_path(s, d)
            yaw = float(road_heading + heading_offset)
            velocity = speed * np.array([np.cos(yaw), np.sin(yaw)])
            distance = np.linalg.norm(xy_ref - ego.pose(t_ref)[0])
            if distance > limit or distance < 3.0:
                continue
            xy0 = xy_ref - t_ref * velocity
            track = xy0 + sweep_times[:, None] * velocity                    # (T, 2)
            half = size[:2] / 2 + _CLEARANCE
            if rectangles_overlap(track, np.full(len(track), yaw), half,
                                  ego_centre, ego_yaw, ego_half).any():
                continue
            if len(names):
                others_half = np.array(sizes)[:, None, :2] / 2 + _CLEARANCE   # (N, 1, 2)
                clash = rectangles_overlap(tracks_xy, np.array(yaws)[:, None], others_half,
                                           track[None], np.full((1, 1), yaw), half[None, None])
                if clash.any():
                    continue
            names.append(name)
            sizes.append(size)
            xy0s.append(xy0)
            yaws.append(yaw)
            velocities.append(velocity)
            tracks_xy = np.concatenate([tracks_xy, track[None]], axis=0)
            break
    return SceneObjects(names, np.array(sizes), np.array(xy0s), np.array(yaws),
                        np.array(velocities))
