"""Render a camera image of a synthetic scene by casting one ray per pixel.

Pixel (column u, row v) looks along ``K^-1 [u, v, 1]`` in the camera frame (pixel centres
at integer coordinates, as the devkit's ``view_points`` maps points), turned into the
global frame through the camera's calibration and the ego pose at the image's own
timestamp. The nearest of sky, ground (z = 0) and the objects wins (a z-buffer, so
occlusion is exact). Objects have the shapes the LiDAR sees (:mod:`.vehicle_shapes`: a
car's bonnet, cabin and windshield, a truck's cab and cargo box...), their class colour
(`CLASS_COLOURS`), the shapes' glass, tyres and red rear lights, a few class details (a
pedestrian's head and legs, a cone's white band, a barrier's stripes) and Lambert shading
from a fixed sun. Shading only scales brightness, and no glass lies where a ray to the box
centre enters, so the hue at a box's centre stays its class's.

``bicycle`` and ``motorcycle`` share size, shape, details, LiDAR intensity and motion; the
image is the only place they differ: magenta bicycles, green motorcycles.
"""
from __future__ import annotations

import numpy as np

from .road_and_ego import ASPHALT, GRASS, LANE_MARK, SIDEWALK, EgoTrajectory, ground_kind
from .scene_objects import SceneObjects
from .vehicle_shapes import GLASS, REFLECTOR, TYRE, box_fractions, part_bounds, \
    ray_parts_distance, surface_kind

__all__ = ["CLASS_COLOURS", "render_camera"]

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "car": (35, 75, 205), "truck": (200, 110, 40), "construction_vehicle": (235, 205, 25),
    "bus": (205, 30, 35), "trailer": (125, 55, 170), "barrier": (235, 235, 235),
    "motorcycle": (30, 165, 60), "bicycle": (215, 40, 195), "pedestrian": (25, 185, 195),
    "traffic_cone": (255, 90, 0)}
_GROUND_COLOURS = np.zeros((4, 3))
_GROUND_COLOURS[[ASPHALT, LANE_MARK, SIDEWALK, GRASS]] = (
    (88, 88, 92), (230, 230, 220), (165, 160, 150), (75, 125, 60))
_SKY_HORIZON, _SKY_ZENITH = np.array([205, 218, 235.0]), np.array([95, 140, 210.0])
_HAZE = np.array([190, 200, 210.0])
_SUN = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])
_GLASS, _TYRE, _SKIN, _TROUSERS = (45, 55, 65), (25, 25, 25), (225, 185, 150), (45, 45, 65)
_RED_STRIPE, _WHITE = (210, 30, 30), (245, 245, 245)
_REAR_LIGHT = (200, 12, 12)


def render_camera(camera_to_global: np.ndarray, intrinsic: np.ndarray, width: int, height: int,
                  objects: SceneObjects, t: float, road: EgoTrajectory) -> np.ndarray:
    """RGB image (height, width, 3) uint8 seen from `camera_to_global` (4, 4) at time `t` (s)."""
    rotation, origin = camera_to_global[:3, :3], camera_to_global[:3, 3]
    # K^-1 [u, v, 1] of a pinhole K, in float32: pixels are many, centimetres are plenty.
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    x = ((np.arange(width, dtype=np.float32) - cx) / fx)[None, :]
    y = ((np.arange(height, dtype=np.float32) - cy) / fy)[:, None]
    norm = np.sqrt(x * x + y * y + 1)
    rays = np.stack(np.broadcast_arrays(x / norm, y / norm, 1 / norm), axis=-1)
    dirs = rays @ rotation.T.astype(np.float32)                             # (H, W, 3) global

    up = np.clip(dirs[..., 2], 0, 1)[..., None]
    image = _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * np.sqrt(up)
    depth = np.full((height, width), np.inf)
    with np.errstate(divide="ignore"):
        ground_t = np.where(dirs[..., 2] < -1e-6, -origin[2] / dirs[..., 2], np.inf)
    ground = np.isfinite(ground_t) & (ground_t < 2000)
    depth[ground] = ground_t[ground]
    image[ground] = _ground_colour(origin + ground_t[ground][:, None] * dirs[ground], road,
                                   ground_t[ground])

    centres = objects.centres(t)
    owner = np.full((height, width), -1, dtype=np.int64)
    owner_part = np.full((height, width), -1, dtype=np.int64)
    for i in range(len(objects)):
        window = _screen_window(centres[i], objects.size[i], objects.yaw[i], rotation, origin,
                                intrinsic, width, height)
        if window is None:
            continue
        rows, cols = window
        low, high = part_bounds(objects.names[i], objects.size[i])
        distance, part = ray_parts_distance(origin, dirs[rows, cols], centres[i],
                                            objects.yaw[i], low, high)
        closer = distance < depth[rows, cols]
        depth[rows, cols] = np.where(closer, distance, depth[rows, cols])
        owner[rows, cols] = np.where(closer, i, owner[rows, cols])
        owner_part[rows, cols] = np.where(closer, part, owner_part[rows, cols])
    for i in np.unique(owner[owner >= 0]):
        mask = owner == i
        hit = origin + depth[mask][:, None] * dirs[mask]
        image[mask] = _object_colour(objects.names[i], hit, centres[i], objects.size[i],
                                     objects.yaw[i], owner_part[mask])
    return np.clip(image, 0, 255).astype(np.uint8)


def _screen_window(centre: np.ndarray, size: np.ndarray, yaw: float, rotation: np.ndarray,
                   origin: np.ndarray, intrinsic: np.ndarray, width: int, height: int
                   ) -> tuple[slice, slice] | None:
    """Pixel rows / columns that can see the box; None when it is behind the camera."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    local = signs * size / 2
    cos, sin = np.cos(yaw), np.sin(yaw)
    corners = np.stack([local[:, 0] * cos - local[:, 1] * sin,
                        local[:, 0] * sin + local[:, 1] * cos, local[:, 2]], 1) + centre
    in_camera = (corners - origin) @ rotation                               # (8, 3)
    if in_camera[:, 2].max() <= 0.05:
        return None
    if in_camera[:, 2].min() <= 0.05:       # straddles the image plane: test every pixel
        return slice(0, height), slice(0, width)
    projected = in_camera @ intrinsic.T
    uv = projected[:, :2] / projected[:, 2:3]
    c0, r0 = np.floor(uv.min(axis=0)).astype(int)
    c1, r1 = np.ceil(uv.max(axis=0)).astype(int) + 1
    c0, c1, r0, r1 = max(c0, 0), min(c1, width), max(r0, 0), min(r1, height)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _hash_noise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) per integer cell (a, b)."""
    return np.modf(np.abs(np.sin(a * 12.9898 + b * 78.233) * 43758.5453))[0]


def _ground_colour(points: np.ndarray, road: EgoTrajectory, distance: np.ndarray) -> np.ndarray:
    """Colour (P, 3) of ground points (P, 3): material, 10 cm grain, haze with distance."""
    s, d = road.road_coordinates(points[:, :2])
    colour = _GROUND_COLOURS[ground_kind(s, d)]
    grain = _hash_noise(np.floor(points[:, 0] * 10), np.floor(points[:, 1] * 10))
    colour = colour * (0.9 + 0.2 * grain)[:, None]
    haze = (1 - np.exp(-distance / 180.0))[:, None]
    return colour * (1 - haze) + _HAZE * haze


def _object_colour(name: str, hit: np.ndarray, centre: np.ndarray, size: np.ndarray,
                   yaw: float, part: np.ndarray) -> np.ndarray:
    """Colour (P, 3) of global hit points (P, 3) on parts `part` (P,) of one object."""
    fractions = box_fractions(hit, centre, size, yaw)                       # (P, 3)
    along, across, up = fractions[:, 0] * 2, fractions[:, 1] * 2, fractions[:, 2]
    # The face hit is the one of the hit part that the point is closest to, in units of
    # that part's half size.
    low, high = part_bounds(name, size)
    offset = hit - centre
    cos, sin = np.cos(yaw), np.sin(yaw)
    local = np.stack([offset[:, 0] * cos + offset[:, 1] * sin,
                      -offset[:, 0] * sin + offset[:, 1] * cos, offset[:, 2]], axis=1)
    part_centre, part_half = (low + high)[part] / 2, (high - low)[part] / 2
    scaled = (local - part_centre) / part_half
    face = np.abs(scaled).argmax(axis=1)
    side = face < 2
    rows = np.arange(len(face))
    normal_local = np.zeros_like(local)
    normal_local[rows, face] = np.sign(scaled[rows, face])
    normal = np.stack([normal_local[:, 0] * cos - normal_local[:, 1] * sin,
                       normal_local[:, 0] * sin + normal_local[:, 1] * cos,
                       normal_local[:, 2]], axis=1)
    colour = np.tile(np.asarray(CLASS_COLOURS[name], dtype=np.float64), (len(hit), 1))

    kind = surface_kind(name, fractions)
    colour[kind == GLASS] = _GLASS
    colour[kind == TYRE] = _TYRE
    colour[kind == REFLECTOR] = _REAR_LIGHT
    if name == "pedestrian":
        colour[up > 0.86] = _SKIN
        colour[up < 0.42] = _TROUSERS
    if name == "traffic_cone":
        colour[(up > 0.62) & (up < 0.76)] = _WHITE
    if name == "barrier":
        stripes = np.mod(across * 2.5 + up * 2.0, 1.0) < 0.5
        colour[stripes & side] = _RED_STRIPE
    shade = 0.45 + 0.55 * np.clip(normal @ _SUN, 0, 1)
    grain = 0.96 + 0.08 * _hash_noise(np.floor(along * 20), np.floor(up * 20 + across * 7))
    return colour * (shade * grain)[:, None]
