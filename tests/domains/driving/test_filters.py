"""Point and object filters, point shuffling."""
from __future__ import annotations

import math

import numpy as np
import pytest

from interlace.core.engine.registry import TRANSFORMS
from interlace.domains.driving.data.nuscenes_names import CLASSES
from interlace.domains.driving.data.transforms import (ObjectNameFilter, ObjectRangeFilter,
                                                       PointShuffle, PointsRangeFilter)

RANGE = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]


def test_points_range_filter_keeps_the_open_box():
    points = np.array([[0, 0, 0, 1, 0], [53.9, -53.9, 2.9, 2, 0], [54.0, 0, 0, 3, 0],
                       [0, 0, -5.0, 4, 0], [-60, 0, 0, 5, 0], [1, 2, -4.9, 6, 0.3]], np.float32)
    out = PointsRangeFilter(RANGE)(dict(points=points))
    np.testing.assert_array_equal(out["points"][:, 3], [1, 2, 6])


def test_object_range_filter_uses_bev_centre_and_wraps_yaw():
    boxes = np.array([[10, 0, 9.0, 4, 2, 1.5, 4.0, 0, 0],       # z outside: kept (BEV test)
                      [55, 0, 0, 4, 2, 1.5, 0.0, 0, 0],         # x outside: dropped
                      [0, -53, 0, 4, 2, 1.5, -3.5, 0, 0]], np.float32)
    results = dict(gt_bboxes_3d=boxes, gt_labels_3d=np.array([0, 1, 2]),
                   gt_names=["car", "truck", "construction_vehicle"])
    out = ObjectRangeFilter(RANGE)(results)
    np.testing.assert_array_equal(out["gt_labels_3d"], [0, 2])
    assert out["gt_names"] == ["car", "construction_vehicle"]
    np.testing.assert_allclose(out["gt_bboxes_3d"][:, 6], [4.0 - 2 * math.pi,
                                                           -3.5 + 2 * math.pi], atol=1e-6)


def test_object_name_filter_drops_unknown_labels():
    results = dict(gt_bboxes_3d=np.arange(36, dtype=np.float32).reshape(4, 9),
                   gt_labels_3d=np.array([-1, 3, 10, 9]))
    out = ObjectNameFilter(CLASSES)(results)
    np.testing.assert_array_equal(out["gt_labels_3d"], [3, 9])
    np.testing.assert_array_equal(out["gt_bboxes_3d"][:, 0], [9, 27])


def test_point_shuffle_permutes_without_losing_points():
    np.random.seed(0)
    points = np.arange(500, dtype=np.float32).reshape(100, 5)
    out = PointShuffle()(dict(points=points.copy()))["points"]
    assert not np.array_equal(out, points)
    np.testing.assert_array_equal(out[np.argsort(out[:, 0])], points)


def test_filters_are_built_by_name_from_a_config():
    built = TRANSFORMS.build(dict(type="PointsRangeFilter", point_cloud_range=RANGE))
    assert isinstance(built, PointsRangeFilter)


def test_inverted_range_is_rejected():
    with pytest.raises(ValueError, match="point_cloud_range"):
        PointsRangeFilter([0, 0, 0, -1, 1, 1])
