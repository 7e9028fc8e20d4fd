"""BEV augmentation of points and boxes, its undo on predictions, and the camera
image resize/crop whose matrix keeps projections on the same image content."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interlace.core.interaction.projection_geometry import project_points
from interlace.core.ops.box_geometry import points_in_boxes
from interlace.domains.driving.data.transforms import (GlobalRotScaleTrans, ImageNormalize,
                                                       ImageResizeCrop, RandomFlip3D,
                                                       transform_boxes,
                                                       undo_lidar_augmentation)


def _scene(boxes):
    return dict(points=np.array([[1, 0, 0, 5, 0], [2, 3, 1, 6, 0.1]], np.float32),
                gt_bboxes_3d=np.asarray(boxes, np.float32))


def test_rotation_and_scale_move_points_boxes_and_velocity_as_mmdet3d():
    box = [1, 0, 0, 4, 2, 1.5, 0.3, 1, 0]
    aug = GlobalRotScaleTrans(rot_range=(math.pi / 2, math.pi / 2), scale_ratio_range=(2, 2))
    out = aug(_scene([box]))
    # (x, y) -> rotated 90 deg CCW -> doubled: (1, 0) -> (0, 2); (2, 3) -> (-6, 4).
    np.testing.assert_allclose(out["points"][:, :3], [[0, 2, 0], [-6, 4, 2]], atol=1e-6)
    np.testing.assert_array_equal(out["points"][:, 3:], np.float32([[5, 0], [6, 0.1]]))
    np.testing.assert_allclose(out["gt_bboxes_3d"][0],
                               [0, 2, 0, 8, 4, 3, 0.3 + math.pi / 2, 0, 2], atol=1e-6)
    expected = np.array([[0, -2, 0, 0], [2, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(out["lidar_aug_matrix"], expected, atol=1e-12)
    assert out["pcd_scale_factor"] == 2


@pytest.mark.parametrize("direction, expected", [
    ("horizontal", [1, -2, 0.5, 4, 2, 1.5, -0.3, 1, -0.5]),
    ("vertical", [-1, 2, 0.5, 4, 2, 1.5, math.pi - 0.3, -1, 0.5])])
def test_bev_flips_reflect_centre_yaw_and_velocity(direction, expected):
    box = [1, 2, 0.5, 4, 2, 1.5, 0.3, 1, 0.5]
    flip = RandomFlip3D(flip_ratio_bev_horizontal=float(direction == "horizontal"),
                        flip_ratio_bev_vertical=float(direction == "vertical"))
    out = flip(_scene([box]))
    np.testing.assert_allclose(out["gt_bboxes_3d"][0], expected, atol=1e-6)
    axis = 1 if direction == "horizontal" else 0
    np.testing.assert_allclose(out["points"][:, axis], -_scene([box])["points"][:, axis])


def _random_boxes(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-50, 50, (n, 2)), rng.uniform(-2, 2, (n, 1)),
                           rng.uniform(0.5, 10, (n, 3)), rng.uniform(-math.pi, math.pi, (n, 1)),
                           rng.uniform(-15, 15, (n, 2))], axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augment_then_undo_returns_the_original_boxes_including_flips(seed):
    np.random.seed(seed)
    boxes = _random_boxes(50, seed)
    results = dict(points=np.zeros((0, 5), np.float32), gt_bboxes_3d=boxes.copy())
    results = GlobalRotScaleTrans(rot_range=(-3.0, 3.0), scale_ratio_range=(0.8, 1.2),
                                  translation_std=(1.0, 1.0, 0.5))(results)
    results = RandomFlip3D(1.0, 1.0)(results)
    results = GlobalRotScaleTrans(rot_range=(0.4, 0.4), scale_ratio_range=(1.1, 1.1))(results)
    assert not np.allclose(results["gt_bboxes_3d"][:, :2], boxes[:, :2])
    back = undo_lidar_augmentation(torch.from_numpy(results["gt_bboxes_3d"]),
                                   torch.from_numpy(results["lidar_aug_matrix"]))
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float64
    np.testing.assert_allclose(back.numpy(), boxes, atol=1e-5)


def test_boxes_keep_their_points_through_the_augmentation():
    rng = np.random.default_rng(3)
    boxes = _random_boxes(8, 3)[:, :9]
    near = boxes[:, None, :3] + rng.uniform(-3, 3, (8, 500, 3))      # around each box
    points = np.concatenate([near.reshape(-1, 3), np.zeros((4000, 2))], 1)
    before = points_in_boxes(torch.from_numpy(points), torch.from_numpy(boxes))
    np.random.seed(4)
    results = dict(points=points.astype(np.float32), gt_bboxes_3d=boxes.astype(np.float32))
    results = RandomFlip3D(1.0, 0.0)(GlobalRotScaleTrans(translation_std=(2, 2, 0.3))(results))
    after = points_in_boxes(torch.from_numpy(results["points"]).double(),
                            torch.from_numpy(results["gt_bboxes_3d"]).double(), eps=1e-4)
    assert before.sum() > 200 and (~before).all(1).sum() > 200 and torch.equal(before, after)


def test_projection_of_augmented_points_uses_the_original_lidar2img():
    lidar2img = torch.tensor([[[500.0, -400.0, 0, 0], [300, 0, -400, 0], [1, 0, 0, 0],
                               [0, 0, 0, 1]]])                         # camera looks along +x
    points = np.array([[10, 1, 0.5, 0, 0], [20, -3, -1, 0, 0]], np.float32)
    np.random.seed(5)
    out = RandomFlip3D(0.0, 0.0)(GlobalRotScaleTrans(translation_std=(1, 1, 0))(
        dict(points=points.copy())))
    original, _, _ = project_points(torch.from_numpy(points)[None], lidar2img[None], (600, 1000))
    current, _, _ = project_points(torch.from_numpy(out["points"])[None], lidar2img[None],
                                   (600, 1000),
                                   bev_aug=torch.from_numpy(out["lidar_aug_matrix"]).float()[None])
    torch.testing.assert_close(current, original, atol=1e-3, rtol=0)


def test_transform_boxes_rejects_a_shear():
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(ValueError, match="not a BEV augmentation"):
        transform_boxes(np.zeros((1, 9)), shear)


def _coordinate_image(height, width):
    """Float image whose channels are the continuous (u, v) of each pixel centre."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return np.stack([u, v, np.ones_like(u)], axis=-1)


def _bilinear(image, u, v):
    x, y = u - 0.5, v - 0.5
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("is_train, rand_flip, rot_lim", [
    (False, False, (0.0, 0.0)), (True, True, (-5.4, 5.4)), (True, False, (0.0, 0.0))])
def test_resize_crop_matrix_keeps_projected_points_on_the_same_content(is_train, rand_flip,
                                                                       rot_lim):
    np.random.seed(6)
    height, width = 90, 160
    lidar2img = np.array([[80.0, -80, 0, 0], [45, 0, -80, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    rng = np.random.default_rng(7)
    points = np.stack([rng.uniform(5, 30, 200), rng.uniform(-8, 8, 200),
                       rng.uniform(-3, 3, 200), np.ones(200)], axis=1)
    cam = points @ lidar2img.T
    uv = cam[:, :2] / cam[:, 2:3]
    results = dict(img=[_coordinate_image(height, width)] * 6,
                   img_aug_matrix=np.tile(np.eye(4), (6, 1, 1)))
    out = ImageResizeCrop(final_dim=(44, 72), resize_lim=(0.45, 0.6), bot_pct_lim=(0.0, 0.1),
                          rot_lim=rot_lim, rand_flip=rand_flip, is_train=is_train)(results)
    assert out["img_shape"] == (44, 72) and out["img"][0].shape == (44, 72, 3)
    checked = 0
    for view in range(6):
        aug = out["img_aug_matrix"][view]
        new_uv = uv @ aug[:2, :2].T + aug[:2, 3]
        inside = ((new_uv[:, 0] > 2) & (new_uv[:, 0] < 70) & (new_uv[:, 1] > 2)
                  & (new_uv[:, 1] < 42) & (uv[:, 0] > 2) & (uv[:, 0] < width - 2)
                  & (uv[:, 1] > 2) & (uv[:, 1] < height - 2))
        for (u, v), (nu, nv) in zip(uv[inside], new_uv[inside]):
            np.testing.assert_allclose(_bilinear(out["img"][view], nu, nv)[:2], [u, v],
                                       atol=0.02)
            checked += 1
    assert checked > 100
    # The model's projection reads the same 4 x 4 layout.
    model_uv, _, _ = project_points(torch.from_numpy(points[:, :3])[None],
                                    torch.from_numpy(lidar2img)[None, None], (44, 72),
                                    img_aug=torch.from_numpy(out["img_aug_matrix"][:1])[None])
    first = out["img_aug_matrix"][0]
    np.testing.assert_allclose(model_uv[0, 0].numpy(), uv @ first[:2, :2].T + first[:2, 3],
                               atol=1e-6)


def test_test_mode_crop_is_centred_horizontally_and_bottom_aligned():
    aug = ImageResizeCrop(final_dim=(40, 60), resize_lim=(0.5, 0.5))
    out = aug(dict(img=[np.zeros((90, 160, 3), np.uint8)]))
    # Resized to 80 x 45; crop columns 10..70, rows 5..45.
    expected = np.eye(4)
    expected[:2, :2] = np.diag([0.5, 0.5])
    expected[:2, 3] = [-10, -5]
    np.testing.assert_allclose(out["img_aug_matrix"][0], expected)
    assert out["img"][0].dtype == np.uint8


def test_crop_larger_than_the_resized_image_pads_with_zeros():
    # 0.48 x (90, 160) -> (43, 76): a (45, 80) crop bottom-aligned starts 2 rows above the
    # image and ends 4 columns right of it (the full-scale 0.48 / 448 x 800 setting alike).
    out = ImageResizeCrop(final_dim=(45, 80), resize_lim=(0.48, 0.48))(
        dict(img=[np.full((90, 160, 3), 255, np.uint8)]))
    image = out["img"][0]
    assert not image[:2].any() and not image[:, 76:].any()
    assert (image[2:, :76] == 255).all()
    np.testing.assert_allclose(out["img_aug_matrix"][0][:2, 3], [0, 2])


def test_normalise_swaps_to_rgb_and_scales():
    image = np.zeros((2, 2, 3), np.uint8)
    image[...] = (10, 20, 30)                                          # B, G, R
    out = ImageNormalize(mean=(1, 2, 3), std=(2, 2, 2), to_rgb=True)(dict(img=[image]))
    np.testing.assert_allclose(out["img"][0][0, 0], [14.5, 9.0, 3.5])
    assert out["img"][0].dtype == np.float32
