"""Names and conventions of the nuScenes detection task, shared by the driving domain.

Frames and boxes
----------------
Info files, datasets, transforms and exporters all use the mmdet3d v1.x LiDAR frame:
x forward, y left, z up, origin at the LIDAR_TOP sensor of the key frame. A box is the
row ``(x, y, z, l, w, h, yaw)`` with (x, y, z) its **geometric centre** (as in the info
files; mmdet3d's ``LiDARInstance3DBoxes`` keeps the bottom centre instead), l along the
heading, yaw counter-clockwise from +x (see ``interlace.core.ops.box_geometry``). Velocity
``(vx, vy)`` is in m/s in the same frame. The devkit's ``Box.wlh`` is ``(w, l, h)``.

Images: ``cam2img`` is the 3x3 intrinsic matrix (padded to 4x4 where a 4x4 is asked for),
``lidar2cam`` / ``cam2ego`` / ``lidar2ego`` / ``ego2global`` are 4x4 row-major matrices that
map column vectors (``p_cam = lidar2cam @ p_lidar``).
"""
from __future__ import annotations

# mmdet3d's nuScenes class order (label index = position).
CLASSES: tuple[str, ...] = (
    "car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle",
    "bicycle", "pedestrian", "traffic_cone")

# mmdet3d's camera order.
CAMERAS: tuple[str, ...] = (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT")
LIDAR = "LIDAR_TOP"

# nuScenes attribute names, in the order mmdet3d numbers them (attr_label).
ATTRIBUTES: tuple[str, ...] = (
    "cycle.with_rider", "cycle.without_rider", "pedestrian.moving", "pedestrian.standing",
    "pedestrian.sitting_lying_down", "vehicle.moving", "vehicle.parked", "vehicle.stopped")

# Attribute a prediction gets when it is not moving (speed <= MOVING_SPEED); a moving one
# gets the class's first entry of MOVING_ATTRIBUTE. Empty string: the class has no
# attribute (barrier, traffic_cone), as the devkit expects.
STATIC_ATTRIBUTE: dict[str, str] = {
    "car": "vehicle.parked", "truck": "vehicle.parked",
    "construction_vehicle": "vehicle.parked", "bus": "vehicle.stopped",
    "trailer": "vehicle.parked", "barrier": "", "motorcycle": "cycle.without_rider",
    "bicycle": "cycle.without_rider", "pedestrian": "pedestrian.standing",
    "traffic_cone": ""}
MOVING_ATTRIBUTE: dict[str, str] = {
    "car": "vehicle.moving", "truck": "vehicle.moving",
    "construction_vehicle": "vehicle.moving", "bus": "vehicle.moving",
    "trailer": "vehicle.moving", "barrier": "", "motorcycle": "cycle.with_rider",
    "bicycle": "cycle.with_rider", "pedestrian": "pedestrian.moving", "traffic_cone": ""}
MOVING_SPEED = 0.2  # m/s, as mmdet3d's nuScenes exporter

# A general nuScenes category for each detection class (the generator writes these; the
# devkit's `category_to_detection_name` maps them back).
CATEGORY_OF_CLASS: dict[str, str] = {
    "car": "vehicle.car", "truck": "vehicle.truck",
    "construction_vehicle": "vehicle.construction", "bus": "vehicle.bus.rigid",
    "trailer": "vehicle.trailer", "barrier": "movable_object.barrier",
    "motorcycle": "vehicle.motorcycle", "bicycle": "vehicle.bicycle",
    "pedestrian": "human.pedestrian.adult", "traffic_cone": "movable_object.trafficcone"}

# DetectionEval's per-class evaluation range in metres (detection_cvpr_2019.json).
EVAL_RANGE: dict[str, float] = {
    "car": 50, "truck": 50, "bus": 50, "trailer": 50, "construction_vehicle": 50,
    "pedestrian": 40, "motorcycle": 40, "bicycle": 40, "traffic_cone": 30, "barrier": 30}

# Which split names a database version supports (as the devkit's `load_gt` checks).
SPLITS_OF_VERSION: dict[str, tuple[str, ...]] = {
    "v1.0-trainval": ("train", "val"), "v1.0-mini": ("mini_train", "mini_val"),
    "v1.0-test": ("test",)}


def attribute_for(name: str, speed: float) -> str:
    """The attribute name an exported box of class `name` moving at `speed` m/s gets."""
    table = MOVING_ATTRIBUTE if speed > MOVING_SPEED else STATIC_ATTRIBUTE
    return table[name]
