"""The nuScenes sensor rig: LIDAR_TOP and the six cameras, as calibrated on the real car.

Translations (metres) and rotations (unit quaternions ``[w, x, y, z]``, sensor -> ego) are
the ``calibrated_sensor`` records of the nuScenes v1.0 logs (LIDAR_TOP of the
``n015-2018-07-18`` calibration, cameras as published with every nuScenes release);
intrinsics are for the full 1600 x 900 images. The ego frame is the nuScenes one: origin at
the middle of the rear axle on the ground, x forward, y left, z up.

The LiDAR model is the Velodyne HDL-32E of nuScenes: 32 beams from -30.67 deg to +10.67 deg
elevation (1.33 deg apart), 20 Hz, returns out to about 70 m here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nuscenes_names import CAMERAS, LIDAR

__all__ = ["SensorCalibration", "SENSOR_CALIBRATION", "IMAGE_SIZE", "LIDAR_BEAM_ELEVATIONS_DEG",
           "LIDAR_MAX_RANGE", "EGO_EXTENT", "scaled_intrinsic", "quaternion_to_matrix",
           "yaw_quaternion", "camera_trigger_offset_us"]


@dataclass(frozen=True)
class SensorCalibration:
    """One ``calibrated_sensor`` record (sensor -> ego)."""

    channel: str
    modality: str                        # "lidar" | "camera"
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]   # w, x, y, z
    intrinsic: tuple[tuple[float, ...], ...] = ()  # 3x3 at 1600 x 900, () for the LiDAR


SENSOR_CALIBRATION: dict[str, SensorCalibration] = {c.channel: c for c in (
    SensorCalibration(LIDAR, "lidar", (0.943713, 0.0, 1.84023),
                      (0.7077955119163518, -0.006492242056004365, 0.010646214713995808,
                       -0.7063073142877817)),
    SensorCalibration("CAM_FRONT", "camera", (1.70079118954, 0.0159456324149, 1.51095763913),
                      (0.4998015430569128, -0.5030316162024876, 0.4997798114386805,
                       -0.49737083824542755),
                      ((1266.417203046554, 0.0, 816.2670197447984),
                       (0.0, 1266.417203046554, 491.50706579294757), (0.0, 0.0, 1.0))),
    SensorCalibration("CAM_FRONT_RIGHT", "camera", (1.5508477543, -0.493404796419, 1.49574800619),
                      (0.2060347966337182, -0.2026940577919598, 0.6824507824531167,
                       -0.6713610884174485),
                      ((1260.8474446004698, 0.0, 807.968244525554),
                       (0.0, 1260.8474446004698, 495.3344268742088), (0.0, 0.0, 1.0))),
    SensorCalibration("CAM_FRONT_LEFT", "camera", (1.52387798135, 0.494631336551, 1.50932822144),
                      (0.6757265034669446, -0.6736266522251881, 0.21214015046209478,
                       -0.21122827103904068),
                      ((1272.5979470598488, 0.0, 826.6154927353808),
                       (0.0, 1272.5979470598488, 479.75165386361925), (0.0, 0.0, 1.0))),
    SensorCalibration("CAM_BACK", "camera", (0.0283260309358, 0.00345136761476, 1.57910346144),
                      (0.5037872666382278, -0.49740249788611096, -0.4941850223835201,
                       0.5045496097725578),
                      ((809.2209905677063, 0.0, 829.2196003259838),
                       (0.0, 809.2209905677063, 481.77842384512485), (0.0, 0.0, 1.0))),
    SensorCalibration("CAM_BACK_LEFT", "camera", (1.03569100218, 0.484795032713, 1.59097014818),
                      (0.6924185592174665, -0.7031619420114925, -0.11648342771943819,
                       0.11203317912370753),
                      ((1256.7414812095406, 0.0, 792.1125740759628),
                       (0.0, 1256.7414812095406, 492.7757465151356), (0.0, 0.0, 1.0))),
    SensorCalibration("CAM_BACK_RIGHT", "camera", (1.0148780988, -0.480568219723, 1.56239545128),
                      (0.12280980120078765, -0.132400842670559, -0.7004305821388234,
                       0.690496031265798),
                      ((1259.5137405846733, 0.0, 807.2529053838625),
                       (0.0, 1259.5137405846733, 501.19579884916527), (0.0, 0.0, 1.0))),
)}
assert tuple(c for c in SENSOR_CALIBRATION if c != LIDAR) == CAMERAS

# (width, height) of the images per --scale; "cpu" is the real image shrunk 4x.
IMAGE_SIZE: dict[str, tuple[int, int]] = {"cpu": (400, 225), "nuscenes": (1600, 900)}
FULL_IMAGE_SIZE = IMAGE_SIZE["nuscenes"]

LIDAR_BEAM_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)
LIDAR_MAX_RANGE = 70.0
# The ego car's footprint in the ego frame (x_min, x_max, y_min, y_max, height): a
# Renault Zoe is 4.1 m long; the rear axle sits about 0.8 m from its back.
EGO_EXTENT = (-0.9, 3.3, -0.95, 0.95, 1.6)


def scaled_intrinsic(channel: str, scale: str) -> np.ndarray:
    """The 3x3 intrinsic of `channel` for images of size IMAGE_SIZE[scale]: (3, 3)."""
    full = np.asarray(SENSOR_CALIBRATION[channel].intrinsic, dtype=np.float64)
    factor = IMAGE_SIZE[scale][0] / FULL_IMAGE_SIZE[0]
    # Shrinking an image by f maps pixel centres u -> (u + 0.5) f - 0.5; for f = 1/4 the
    # half-pixel shift is below a tenth of a pixel, so the plain f * K is what we publish.
    scaled = full.copy()
    scaled[:2] *= factor
    return scaled


def quaternion_to_matrix(quaternion: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Rotation matrix (3, 3) of a unit quaternion ``[w, x, y, z]``."""
    w, x, y, z = np.asarray(quaternion, dtype=np.float64) / np.linalg.norm(quaternion)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def yaw_quaternion(yaw: float) -> list[float]:
    """``[w, x, y, z]`` of a rotation by `yaw` radians about +z (nuScenes box rotation)."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def camera_trigger_offset_us(channel: str) -> int:
    """Microseconds between a LiDAR sweep's timestamp and the camera image taken with it.

    nuScenes triggers each camera when the spinning LiDAR sweeps across the middle of its
    field of view, so the offset grows with the camera's yaw (front first, back last).
    """
    rotation = quaternion_to_matrix(SENSOR_CALIBRATION[channel].rotation)
    optical_axis = rotation[:, 2]          # camera z in the ego frame
    yaw = np.arctan2(optical_axis[1], optical_axis[0])   # 0 ahead, +-pi behind
    # The sweep (clockwise seen from above) starts behind the car: -25 ms behind-left ...
    # 0 ahead ... +25 ms behind-right.
    return int(round(-yaw / np.pi * 25_000))
