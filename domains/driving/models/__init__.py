"""Driving models (DeepInteraction++ and the LiDAR-only detector). Importing this package
registers the LiDAR stream, camera stream, detection head and detectors."""
from . import camera, data_preprocessor, detectors, heads, lidar  # noqa: F401
