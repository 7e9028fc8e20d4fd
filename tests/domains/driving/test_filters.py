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


def test_seeded_point_shuffle_is_deterministic_per_sample_and_ignores_the_global_seed():
    points = np.arange(1000, dtype=np.float32).reshape(200, 5)
    shuffle = TRANSFORMS.build(dict(type="PointShuffle", seed=0))
    np.random.seed(1)
    a = shuffle(dict(points=points.copy(), token="tok-a"))["points"]
    np.random.seed(2)
    again = shuffle(dict(points=points.copy(), token="tok-a"))["points"]
    other = shuffle(dict(points=points.copy(), token="tok-b"))["points"]
    reseeded = PointShuffle(seed=1)(dict(points=points.copy(), token="tok-a"))["points"]
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, points) and not np.array_equal(a, other)
    assert not np.array_equal(a, reseeded)
    np.testing.assert_array_equal(a[np.argsort(a[:, 0])], points)
    # Without a token the sample index (then the LiDAR path) keys the permutation.
    by_index = PointShuffle(seed=0)(dict(points=points.copy(), sample_idx=3))["points"]
    np.testing.assert_array_equal(
        by_index, PointShuffle(seed=0)(dict(points=points.copy(), sample_idx=3))["points"])
    assert repr(shuffle) == "PointShuffle(seed=0)" and repr(PointShuffle()) == "PointShuffle()"


def test_seeded_test_time_shuffle_keeps_the_sweep_share_of_capped_voxels():
    """Key-frame points first (as the loaders give them) and 40 points per 0.4 m voxel:
    a 10-point cap keeps only key-frame points unless the cloud is shuffled."""
    import torch

    from interlace.core.ops.voxelize import voxelize_hard

    rng = np.random.default_rng(0)
    cells = rng.integers(0, 50, (400, 2)).repeat(40, axis=0) * 0.4 + 0.2
    xyz = np.column_stack([cells + rng.uniform(-0.19, 0.19, cells.shape), np.full(len(cells), 0.1)])
    lag = np.tile(np.repeat([0.0, 0.05, 0.1, 0.15], 10), 400)        # 25 % key frame
    order = np.argsort(lag, kind="stable")                            # key frame first
    points = np.column_stack([xyz, np.ones(len(xyz)), lag])[order].astype(np.float32)

    def sweep_share_kept(cloud):
        voxels, _, num = voxelize_hard(torch.from_numpy(cloud), [0.4, 0.4, 0.2],
                                       [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0], 10, 40000)
        slots = torch.arange(10).unsqueeze(0) < num.unsqueeze(1)
        return float((voxels[..., 4][slots] > 0).float().mean())

    assert sweep_share_kept(points) < 0.01                            # unshuffled
    shuffled = PointShuffle(seed=0)(dict(points=points.copy(), token="t"))["points"]
    assert abs(sweep_share_kept(shuffled) - 0.75) < 0.02
