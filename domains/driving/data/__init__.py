"""Driving data: nuScenes through nuscenes-devkit, mmdet3d v1.x info files, the dataset
and its transforms. Importing this package registers them under scope `interlace`."""
from .nuscenes_names import CAMERAS, CLASSES  # noqa: F401
