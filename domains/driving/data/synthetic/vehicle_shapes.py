"""Object shapes shared by the LiDAR and the camera, so that vehicles have a front and a back.

A slab the size of the annotated box looks the same at yaw and at yaw + pi, so neither a
detector nor anyone else could tell a parked car's heading from its LiDAR returns. Real
vehicles are not symmetric: a car has a low bonnet in front of a cabin that sits towards
the rear, a truck a low cab in front of a tall cargo box, a wheel loader a low bucket in
front; glass (the windshield above all) returns few LiDAR points; the rear carries
retro-reflective lights and plates. Each class here is a union of axis-aligned *parts*
inside its annotated box, with *surface regions* painted on them:

- ``glass``: the camera draws dark glass; the LiDAR gets a return from only
  ``GLASS_RETURN_PROBABILITY`` of the rays that hit it, and a weak one;
- ``tyres``: black in the camera, dull (half intensity) in the LiDAR;
- ``reflectors``: rear lights and plate, red in the camera, bright in the LiDAR.

Both sensors read the same table (`SHAPES`), so the side of a car where the camera shows
the windshield is the side towards which the LiDAR's bonnet points. Glass lies above 0.55
of the box height (only a bus door reaches lower, on the sides, away from the middle), so
a ray to the box centre never enters through glass and the camera shows the class colour
there.

Coordinates are *box fractions*: x from -0.5 (rear) to +0.5 (front, the heading), y from
-0.5 (right) to +0.5 (left), z from 0 (ground) to 1 (top). Every shape touches all six
faces of its box, so the annotated box stays the tight box around the object. Pedestrians,
barriers and cones keep the plain box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Shape", "SHAPES", "BODY", "GLASS", "TYRE", "REFLECTOR", "GLASS_RETURN_PROBABILITY",
           "SURFACE_INTENSITY_FACTOR", "part_bounds", "box_fractions", "surface_kind",
           "ray_parts_distance"]

Box = tuple[tuple[float, float, float], tuple[float, float, float]]

# Surface kinds returned by `surface_kind`.
BODY, GLASS, TYRE, REFLECTOR = 0, 1, 2, 3
# Windshields pass most of a 905 nm beam: keep about one hit in seven, at a third of the
# body's intensity, so the glass shows as a sparse, dark patch.
GLASS_RETURN_PROBABILITY = 0.15
SURFACE_INTENSITY_FACTOR = np.array([1.0, 0.3, 0.5, 4.0])   # by kind: body, glass, tyre, reflector


@dataclass(frozen=True)
class Shape:
    """Solid parts and surface regions of one class, in box fractions (see the module)."""

    parts: tuple[Box, ...]
    glass: tuple[Box, ...] = ()
    tyres: tuple[Box, ...] = ()
    reflectors: tuple[Box, ...] = ()


def _both_sides(x0: float, x1: float, y_in: float, z0: float, z1: float,
                y_out: float = 0.51) -> tuple[Box, Box]:
    """A surface region on the right and the left face (|y| from y_in to y_out)."""
    return ((x0, -y_out, z0), (x1, -y_in, z1)), ((x0, y_in, z0), (x1, y_out, z1))


def _wheels(x_pairs: tuple[tuple[float, float], ...], z1: float, y_in: float = 0.44
            ) -> tuple[Box, ...]:
    """Tyre regions on both side faces for each (x0, x1) axle span."""
    return tuple(box for x0, x1 in x_pairs for box in _both_sides(x0, x1, y_in, 0.0, z1))


def _rear_lights(z0: float, z1: float, y_in: float = 0.3, y_out: float = 0.5) -> tuple[Box, Box]:
    """Reflectors at both rear corners; x from -0.51 to -0.47 holds the camera's hit on the
    rear face and the LiDAR's, which is 4 cm inside it (2 % of a 1.9 m bike)."""
    return ((-0.51, -y_out, z0), (-0.47, -y_in, z1)), ((-0.51, y_in, z0), (-0.47, y_out, z1))


_FULL: Box = ((-0.5, -0.5, 0.0), (0.5, 0.5, 1.0))
# A hatchback: bonnet (0.55 high) over the front 0.35, cabin from -0.42 to +0.15.
_CAR = Shape(
    parts=(((-0.5, -0.5, 0.0), (0.5, 0.5, 0.55)), ((-0.42, -0.5, 0.55), (0.15, 0.5, 1.0))),
    glass=(((0.12, -0.44, 0.61), (0.18, 0.44, 0.95)), *_both_sides(-0.36, 0.11, 0.44, 0.62, 0.92)),
    tyres=_wheels(((0.25, 0.45), (-0.45, -0.25)), 0.3),
    reflectors=_rear_lights(0.38, 0.5))
# A rigid truck: the cab (0.8 high, down to the road) in front, a gap, then the cargo box
# on its floor at 0.35, over the rear wheels and two chassis rails (open in between).
_TRUCK = Shape(
    parts=(((0.2, -0.5, 0.0), (0.5, 0.5, 0.8)), ((-0.5, -0.5, 0.35), (0.16, 0.5, 1.0)),
           ((-0.42, -0.5, 0.0), (-0.2, 0.5, 0.35)), ((-0.5, -0.3, 0.12), (0.2, 0.3, 0.35))),
    glass=(((0.47, -0.44, 0.58), (0.51, 0.44, 0.77)), *_both_sides(0.3, 0.46, 0.44, 0.58, 0.76)),
    tyres=_wheels(((0.28, 0.42), (-0.42, -0.2)), 0.25),
    reflectors=_rear_lights(0.36, 0.42))
# A coach: a high windshield, a glazed door behind it on both sides, side windows that
# stop short of the rear engine bay, and an air-conditioning unit on the rear half of the
# roof.
_BUS = Shape(
    parts=(((-0.5, -0.5, 0.0), (0.5, 0.5, 0.93)), ((-0.38, -0.35, 0.93), (-0.05, 0.35, 1.0))),
    glass=(((0.47, -0.46, 0.56), (0.51, 0.46, 0.9)), *_both_sides(-0.3, 0.44, 0.44, 0.56, 0.86),
           *_both_sides(0.37, 0.45, 0.44, 0.06, 0.86)),
    tyres=_wheels(((0.25, 0.36), (-0.36, -0.22)), 0.2),
    reflectors=_rear_lights(0.12, 0.22))
# A wheel loader: the bucket low in front, the cab behind the middle, the engine at the rear.
_CONSTRUCTION = Shape(
    parts=(((-0.5, -0.5, 0.0), (0.3, 0.5, 0.4)), ((0.3, -0.5, 0.0), (0.5, 0.5, 0.3)),
           ((-0.25, -0.4, 0.4), (0.12, 0.4, 1.0)), ((-0.5, -0.45, 0.4), (-0.25, 0.45, 0.62))),
    glass=(((0.09, -0.36, 0.58), (0.15, 0.36, 0.95)),
           *_both_sides(-0.2, 0.08, 0.37, 0.58, 0.95, y_out=0.43)),
    tyres=_wheels(((0.12, 0.28), (-0.42, -0.26)), 0.35),
    reflectors=_rear_lights(0.22, 0.34))
# A box semi-trailer: the rear bogie under the rear 0.3, landing legs near the front, open
# below the deck in between (where the tractor would be at the front).
_TRAILER = Shape(
    parts=(((-0.5, -0.5, 0.3), (0.5, 0.5, 1.0)), ((-0.5, -0.5, 0.0), (-0.2, 0.5, 0.3)),
           ((0.22, -0.42, 0.0), (0.26, 0.42, 0.3))),
    tyres=_wheels(((-0.47, -0.23),), 0.28),
    reflectors=_rear_lights(0.31, 0.37))
# Two wheels under a narrow frame, the rider behind the middle, handlebars in front.
_TWO_WHEELER = Shape(
    parts=(((-0.5, -0.2, 0.0), (0.5, 0.2, 0.5)), ((-0.3, -0.5, 0.45), (0.05, 0.5, 1.0)),
           ((0.15, -0.5, 0.5), (0.25, 0.5, 0.72))),
    tyres=(((0.22, -0.21, 0.0), (0.51, 0.21, 0.4)), ((-0.51, -0.21, 0.0), (-0.22, 0.21, 0.4))),
    reflectors=(((-0.51, -0.2, 0.42), (-0.47, 0.2, 0.5)),))

SHAPES: dict[str, Shape] = {
    "car": _CAR, "truck": _TRUCK, "bus": _BUS, "construction_vehicle": _CONSTRUCTION,
    "trailer": _TRAILER, "motorcycle": _TWO_WHEELER, "bicycle": _TWO_WHEELER,
    "pedestrian": Shape((_FULL,)), "barrier": Shape((_FULL,)),
    "traffic_cone": Shape((_FULL,))}


def part_bounds(name: str, size: np.ndarray, inset: float = 0.0, below_ground: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Parts of `name` in metres, in the box frame (centre at the origin): low, high (P, 3).

    `inset` shrinks the outer faces of the box (not the parts' inner faces) by that much;
    parts standing on the ground reach `below_ground` metres under it.
    """
    parts = np.asarray(SHAPES[name].parts, dtype=np.float64)            # (P, 2, 3)
    size = np.asarray(size, dtype=np.float64)
    offset = np.array([0.0, 0.0, 0.5])                                   # z fractions from 0
    low, high = (parts[:, 0] - offset) * size, (parts[:, 1] - offset) * size
    half = size / 2
    low = np.maximum(low, -half + inset)
    high = np.minimum(high, half - inset)
    low[:, 2] = np.where(parts[:, 0, 2] <= 0.0, -half[2] - below_ground, low[:, 2])
    return low, high


def box_fractions(points: np.ndarray, centre: np.ndarray, size: np.ndarray, yaw: np.ndarray
                  ) -> np.ndarray:
    """Global points (P, 3) in box fractions (P, 3) of their boxes; centre / size (P, 3) or
    (3,), yaw (P,) or scalar."""
    rel = np.asarray(points, dtype=np.float64) - centre
    cos, sin = np.cos(yaw), np.sin(yaw)
    along = rel[:, 0] * cos + rel[:, 1] * sin
    across = -rel[:, 0] * sin + rel[:, 1] * cos
    size = np.broadcast_to(size, rel.shape)
    return np.stack([along / size[:, 0], across / size[:, 1], rel[:, 2] / size[:, 2] + 0.5], 1)


def surface_kind(name: str, fractions: np.ndarray) -> np.ndarray:
    """Kind (P,) int8 (BODY, GLASS, TYRE, REFLECTOR) of surface points of a `name` object,
    given in box fractions (P, 3)."""
    kind = np.full(len(fractions), BODY, dtype=np.int8)
    shape = SHAPES[name]
    for code, regions in ((GLASS, shape.glass), (TYRE, shape.tyres),
                          (REFLECTOR, shape.reflectors)):
        for low, high in regions:
            inside = np.all((fractions >= low) & (fractions <= high), axis=1)
            kind[inside] = code
    return kind


def rays_in_box_frame(origin: np.ndarray, directions: np.ndarray, centre: np.ndarray,
                      yaw: float) -> tuple[tuple, tuple]:
    """Rays' origin and directions in a yawed box's frame (x along the heading), as
    per-axis tuples: the slab tests work axis by axis, which is faster in numpy than
    reductions over a length-3 axis. origin (3,), directions (..., 3), centre (3,)."""
    cos, sin = float(np.cos(yaw)), float(np.sin(yaw))
    offset = np.asarray(origin, dtype=np.float64) - centre
    local_origin = (offset[0] * cos + offset[1] * sin, -offset[0] * sin + offset[1] * cos,
                    offset[2])
    local_dirs = (directions[..., 0] * cos + directions[..., 1] * sin,
                  -directions[..., 0] * sin + directions[..., 1] * cos, directions[..., 2])
    return local_origin, local_dirs


def ray_parts_distance(origin: np.ndarray, directions: np.ndarray, centre: np.ndarray,
                       yaw: float, low: np.ndarray, high: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Distance along unit rays to the nearest of several boxes sharing one pose.

    origin: (3,) global; directions: (..., 3) global unit vectors; centre: (3,); low / high:
    (P, 3) part extents in the box frame (x along the heading). Returns the distance (...),
    inf where every part is missed, and the index of the part hit (...), -1 where none is.
    """
    local_origin, local_dirs = rays_in_box_frame(origin, directions, centre, yaw)
    # The reciprocals are shared by every part: computed once per axis.
    inverse = []
    for axis in range(3):
        component = local_dirs[axis]
        with np.errstate(divide="ignore"):
            inverse.append(1.0 / np.where(np.abs(component) < 1e-12, 1e-12, component))
    best = np.full(np.shape(directions)[:-1], np.inf)
    part = np.full(best.shape, -1, dtype=np.int64)
    for p in range(len(low)):
        t_near = t_far = None
        for axis in range(3):    # per axis: several times faster than length-3 reductions
            t1 = (float(low[p, axis]) - local_origin[axis]) * inverse[axis]
            t2 = (float(high[p, axis]) - local_origin[axis]) * inverse[axis]
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t_near = near if t_near is None else np.maximum(t_near, near)
            t_far = far if t_far is None else np.minimum(t_far, far)
        closer = (t_near <= t_far) & (t_near > 0) & (t_near < best)
        best = np.where(closer, t_near, best)
        part = np.where(closer, p, part)
    return best, part
