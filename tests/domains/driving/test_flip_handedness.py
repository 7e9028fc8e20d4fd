"""RandomFlip3D's ``flip_mode='keep_handedness'``: only a rotation by pi (both flips) or
nothing, so right-hand traffic stays right-hand; the default mode is unchanged."""
from __future__ import annotations

import math

import numpy as np
import pytest

from interlace.domains.driving.data.transforms import RandomFlip3D, undo_lidar_augmentation

# Right-hand traffic as the generator lays it out: moving along +x right of the ego
# (y < 0), oncoming (-x) left of it, parked right heading +x.
TRAFFIC = np.array([
    # x, y, z, l, w, h, yaw, vx, vy
    [12.0, -3.5, 0.85, 4.6, 1.9, 1.7, 0.0, 8.0, 0.0],
    [-20.0, 3.5, 0.85, 4.6, 1.9, 1.7, math.pi - 0.1, -6.0 * math.cos(0.1),
     6.0 * math.sin(0.1)],
    [5.0, -6.6, 0.85, 4.6, 1.9, 1.7, 0.05, 0.0, 0.0]], dtype=np.float64)


def _handedness(boxes: np.ndarray) -> np.ndarray:
    """(N,) sign of heading x position (z of the cross product): -1 for every object of a
    right-hand scene, where traffic keeps to the right of the road's centre line."""
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], axis=1)
    return np.sign(heading[:, 0] * boxes[:, 1] - heading[:, 1] * boxes[:, 0])


def _scene() -> dict:
    return dict(points=np.array([[1, 0, 0, 5, 0], [2, 3, 1, 6, 0.1]], np.float32),
                gt_bboxes_3d=TRAFFIC.astype(np.float32))


def test_keep_handedness_rotates_points_boxes_velocities_and_yaws_by_pi():
    out = RandomFlip3D(1.0, 1.0, flip_mode="keep_handedness")(_scene())
    assert out["pcd_horizontal_flip"] and out["pcd_vertical_flip"]
    # By hand: (x, y) -> (-x, -y); z, sizes, intensity and lag unchanged.
    np.testing.assert_allclose(out["points"], [[-1, 0, 0, 5, 0], [-2, -3, 1, 6, 0.1]],
                               atol=1e-6)
    box = out["gt_bboxes_3d"]
    np.testing.assert_allclose(box[0], [-12, 3.5, 0.85, 4.6, 1.9, 1.7, -math.pi, -8, 0],
                               atol=1e-5)
    # yaw pi - 0.1 + pi wraps to -0.1; velocity (-6 cos 0.1, 6 sin 0.1) -> its negative.
    np.testing.assert_allclose(box[1], [20, -3.5, 0.85, 4.6, 1.9, 1.7, -0.1,
                                        6 * math.cos(0.1), -6 * math.sin(0.1)], atol=1e-5)
    np.testing.assert_allclose(box[2], [-5, 6.6, 0.85, 4.6, 1.9, 1.7, 0.05 - math.pi, 0, 0],
                               atol=1e-5)
    np.testing.assert_allclose(out["lidar_aug_matrix"], np.diag([-1.0, -1.0, 1.0, 1.0]))
    # Headings still agree with the velocities of the moving objects.
    for row in box[:2]:
        assert np.dot([math.cos(row[6]), math.sin(row[6])], row[7:9]) > 0
    np.testing.assert_allclose(undo_lidar_augmentation(box, out["lidar_aug_matrix"]),
                               TRAFFIC, atol=1e-5)


def test_keep_handedness_keeps_right_hand_traffic_and_a_single_flip_does_not():
    assert (_handedness(TRAFFIC) == -1).all()
    np.random.seed(0)
    flipped = 0
    for _ in range(200):
        out = RandomFlip3D(0.5, 0.5, flip_mode="keep_handedness")(_scene())
        assert out["pcd_horizontal_flip"] == out["pcd_vertical_flip"]
        assert np.linalg.det(out["lidar_aug_matrix"][:2, :2]) == pytest.approx(1.0)
        assert (_handedness(out["gt_bboxes_3d"]) == -1).all()
        flipped += out["pcd_horizontal_flip"]
    assert 70 <= flipped <= 130          # drawn once per sample with probability 0.5
    for h, v in ((1.0, 0.0), (0.0, 1.0)):     # a mirror: right-hand becomes left-hand
        assert (_handedness(RandomFlip3D(h, v)(_scene())["gt_bboxes_3d"]) == 1).all()


def test_keep_handedness_obeys_preset_flags_and_needs_equal_ratios():
    preset = dict(_scene(), pcd_horizontal_flip=True, pcd_vertical_flip=True)
    out = RandomFlip3D(0.0, 0.0, flip_mode="keep_handedness")(preset)
    np.testing.assert_allclose(out["lidar_aug_matrix"], np.diag([-1.0, -1.0, 1.0, 1.0]))
    out = RandomFlip3D(1.0, 1.0, flip_mode="keep_handedness")(_scene() |
                                                             dict(pcd_horizontal_flip=False))
    assert not out["pcd_horizontal_flip"] and not out["pcd_vertical_flip"]
    with pytest.raises(ValueError, match="must be equal"):
        RandomFlip3D(0.5, 0.0, flip_mode="keep_handedness")
    with pytest.raises(ValueError, match="flip_mode must be one of"):
        RandomFlip3D(0.5, 0.5, flip_mode="rotate")


def test_default_mode_draws_each_flip_independently_as_before():
    assert RandomFlip3D(0.5, 0.5).flip_mode == "independent"
    seen = set()
    for seed in range(40):
        np.random.seed(seed)
        expected = (bool(np.random.rand() < 0.5), bool(np.random.rand() < 0.5))
        np.random.seed(seed)
        out = RandomFlip3D(0.5, 0.5)(_scene())
        got = (out["pcd_horizontal_flip"], out["pcd_vertical_flip"])
        assert got == expected
        matrix = np.diag([-1.0 if got[1] else 1.0, -1.0 if got[0] else 1.0, 1.0, 1.0])
        np.testing.assert_allclose(out["lidar_aug_matrix"], matrix)
        seen.add(got)
    assert len(seen) == 4                # mirrors included, as mmdet3d does
