"""Driving: LiDAR + six cameras, 3D object detection on nuScenes-format data
(DeepInteraction++). `data` reads nuScenes through nuscenes-devkit and mmdet3d v1.x info
files; `evaluation` exports submission JSON and scores it with the devkit's
`DetectionEval`; `models` holds the detectors."""
