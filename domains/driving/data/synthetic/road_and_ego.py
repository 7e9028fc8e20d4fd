"""The road of a synthetic scene and the ego car driving along it.

The ego drives with constant speed and constant yaw rate (a straight road or a gentle
arc), so its pose is closed-form at any timestamp. The road follows the ego's path: lateral
offset ``d`` (metres, + left of the ego lane centre) and arc length ``s`` along the path
name every ground point, which both the object placement (lanes, parking strips,
sidewalks) and the camera renderer (asphalt, lane marks, kerbs, grass) use.

Road cross-section (d, metres): ego lane centred at 0; same-direction lane at -3.5;
oncoming lanes at +3.5 and +7.0; parking strips beyond the outer lane edges; sidewalks
beyond those; grass after.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EgoTrajectory", "ROAD_EDGES", "LANE_CENTRES", "PARKING_CENTRES", "SIDEWALK_BANDS",
           "ground_kind"]

LANE_WIDTH = 3.5
LANE_CENTRES = {"along": (-3.5, 0.0), "oncoming": (3.5, 7.0)}
ROAD_EDGES = (-5.25, 8.75)                      # asphalt of the driving lanes
PARKING_CENTRES = (-6.6, 10.1)                  # parked cars, 2.7 m wide strips
CARRIAGEWAY = (-7.95, 11.45)                    # asphalt incl. parking strips (kerb line)
SIDEWALK_BANDS = ((-11.5, -7.95), (11.45, 15.0))

# Ground material codes returned by `ground_kind`.
ASPHALT, LANE_MARK, SIDEWALK, GRASS = 0, 1, 2, 3


@dataclass(frozen=True)
class EgoTrajectory:
    """Constant speed `speed` (m/s) and yaw rate `yaw_rate` (rad/s) from `start` at t=0."""

    start: tuple[float, float]
    heading: float
    speed: float
    yaw_rate: float

    @property
    def curvature(self) -> float:
        """1 / radius (1/m, + turning left)."""
        return self.yaw_rate / self.speed

    def along_path(self, s: np.ndarray, d: np.ndarray | float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Global xy (..., 2) and road heading (...) at arc length `s`, lateral offset `d`."""
        s = np.asarray(s, dtype=np.float64)
        kappa = self.curvature
        heading = self.heading + kappa * s
        if abs(kappa) < 1e-9:
            x = self.start[0] + s * np.cos(self.heading)
            y = self.start[1] + s * np.sin(self.heading)
        else:
            x = self.start[0] + (np.sin(heading) - np.sin(self.heading)) / kappa
            y = self.start[1] - (np.cos(heading) - np.cos(self.heading)) / kappa
        xy = np.stack([x - np.sin(heading) * d, y + np.cos(heading) * d], axis=-1)
        return xy, heading

    def pose(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ego position xy (..., 2) and yaw (...) at times `t` (s since the first key frame)."""
        return self.along_path(self.speed * np.asarray(t, dtype=np.float64))

    def road_coordinates(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length s (...) and lateral offset d (...) of global points xy (..., 2)."""
        rel = np.asarray(xy, dtype=np.float64) - np.asarray(self.start)
        kappa = self.curvature
        tangent = np.array([np.cos(self.heading), np.sin(self.heading)])
        normal = np.array([-tangent[1], tangent[0]])
        if abs(kappa) < 1e-9:
            return rel @ tangent, rel @ normal
        # Arc about the centre `c`; radius 1/|kappa|, d grows towards the left.
        c = normal / kappa
        from_centre = rel - c
        radius = np.linalg.norm(from_centre, axis=-1)
        d = (1.0 / abs(kappa) - radius) * np.sign(kappa)
        angle = np.arctan2(from_centre[..., 1], from_centre[..., 0]) - np.arctan2(-c[1], -c[0])
        angle = (angle + np.pi) % (2 * np.pi) - np.pi
        return angle / kappa, d


def ground_kind(s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Material code (ASPHALT, LANE_MARK, SIDEWALK, GRASS) of ground points at (s, d)."""
    kind = np.full(np.shape(d), GRASS, dtype=np.int8)
    for low, high in SIDEWALK_BANDS:
        kind[(d >= low) & (d < high)] = SIDEWALK
    kind[(d >= CARRIAGEWAY[0]) & (d < CARRIAGEWAY[1])] = ASPHALT
    # 15 cm paint: dashed lines between same-direction lanes, solid centre and edge lines.
    dashed = (np.abs(d + 1.75) < 0.075) | (np.abs(d - 5.25) < 0.075)
    dashed &= (np.mod(s, 9.0) < 3.0)
    solid = (np.abs(d - 1.75) < 0.1) | (np.abs(d - ROAD_EDGES[0]) < 0.075) | \
            (np.abs(d - ROAD_EDGES[1]) < 0.075)
    kind[dashed | solid] = LANE_MARK
    return kind
