"""DrivingDataPreprocessor: voxel coordinates, batch index, image stacking and padding,
calibration stacking, and the LiDAR-only / dropped-modality paths."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.structures import BaseDataElement

from interlace.core.engine.registry import MODELS
from interlace.domains.driving.data.transforms.formatting import Pack3DDetInputs
from interlace.domains.driving.models.data_preprocessor import DrivingDataPreprocessor


def point(x: float, y: float, z: float, intensity: float = 0.0) -> list[float]:
    return [x, y, z, intensity, 0.0]


def sample(views: int = 2, token: str = "s", **meta) -> BaseDataElement:
    base = dict(token=token, lidar2img=np.tile(np.eye(4, dtype=np.float32), (views, 1, 1)),
                img_aug_matrix=np.tile(np.eye(4, dtype=np.float32), (views, 1, 1)),
                lidar_aug_matrix=np.eye(4, dtype=np.float32),
                view_missing=np.zeros(views, dtype=bool))
    base.update(meta)
    return BaseDataElement(metainfo=base)


def test_voxel_coords_match_hand_computed_cells():
    pts = torch.tensor([point(0.0, 0.0, 0.0), point(-53.96, 10.0, 2.9), point(53.99, -53.99, -4.99),
                        point(60.0, 0.0, 0.0)])  # the last is outside the range
    out = DrivingDataPreprocessor()(dict(inputs=dict(points=[pts])), training=False)
    vox = out["inputs"]["voxels"]
    # Cell = floor((p - lo) / size) with 0.075 m x 0.075 m x 0.2 m over [-54, -54, -5].
    # (0, 0, 0): x, y 54 / 0.075 = 720, z 5 / 0.2 = 25.
    # (-53.96, 10, 2.9): x 0.04 / 0.075 -> 0, y 64 / 0.075 = 853.3 -> 853, z 7.9 / 0.2 -> 39.
    # (53.99, -53.99, -4.99): x 107.99 / 0.075 = 1439.9 -> 1439, y 0, z 0.
    assert vox["coors"].tolist() == [[0, 25, 720, 720], [0, 39, 853, 0], [0, 0, 0, 1439]]
    assert vox["coors"].dtype == torch.int32
    assert vox["voxels"].shape == (3, 10, 5)
    assert vox["num_points"].tolist() == [1, 1, 1]


def test_points_of_one_voxel_share_it_and_the_batch_column_numbers_samples():
    a = torch.tensor([point(0.01, 0.01, 0.01, 1.0), point(10.0, 0.0, 0.0),
                      point(0.02, 0.03, 0.05, 3.0)])
    b = torch.tensor([point(-1.0, -1.0, 0.0), point(20.0, 20.0, 0.0)])
    out = DrivingDataPreprocessor()(dict(inputs=dict(points=[a, b])), training=True)
    vox = out["inputs"]["voxels"]
    assert vox["coors"][:, 0].tolist() == [0, 0, 1, 1]
    assert vox["num_points"].tolist() == [2, 1, 1, 1]
    # The shared voxel holds both points in input order, then zero padding.
    assert torch.equal(vox["voxels"][0, :2], a[[0, 2]]) and not vox["voxels"][0, 2:].any()
    # Sample 1's coords are its own cells, not shifted by sample 0.
    assert vox["coors"][2, 1:].tolist() == [25, 706, 706]  # 53 / 0.075 = 706.7
    assert [p.shape[0] for p in out["inputs"]["points"]] == [3, 2]


def test_voxel_cap_follows_the_training_flag_and_config_overrides_keep_other_defaults():
    pre = MODELS.build(dict(type="DrivingDataPreprocessor",
                            voxel_layer=dict(max_voxels=(2, 3), max_num_points=4)))
    assert pre.voxel_layer.voxel_size == [0.075, 0.075, 0.2]  # default kept
    pts = torch.tensor([point(float(i), 0.0, 0.0) for i in range(5)])
    data = dict(inputs=dict(points=[pts]))
    assert pre(data, training=True)["inputs"]["voxels"]["coors"].shape[0] == 2
    test_vox = pre(data, training=False)["inputs"]["voxels"]
    assert test_vox["coors"].shape[0] == 3 and test_vox["voxels"].shape[1] == 4


def test_lidar_only_batch_has_no_images_and_identity_geometry():
    pts = [torch.tensor([point(1.0, 2.0, 0.0)]), torch.tensor([point(3.0, 2.0, 0.0)])]
    aug = np.diag([2.0, 2.0, 2.0, 1.0]).astype(np.float32)
    samples = [BaseDataElement(metainfo=dict(token="a", lidar_aug_matrix=aug)),
               BaseDataElement(metainfo=dict(token="b"))]
    out = DrivingDataPreprocessor()(dict(inputs=dict(points=pts), data_samples=samples))
    inputs, geo = out["inputs"], out["inputs"]["batch_geometry"]
    assert inputs["imgs"] is None
    assert geo["lidar2img"] is None and geo["view_missing"] is None
    assert geo["img_present"].tolist() == [False, False]
    assert geo["points_present"].tolist() == [True, True]
    assert torch.equal(geo["lidar_aug_matrix"], torch.stack([torch.from_numpy(aug), torch.eye(4)]))
    assert inputs["voxels"]["coors"][:, 0].tolist() == [0, 1]


def test_images_are_stacked_padded_and_their_calibration_stacked():
    imgs = [torch.randn(2, 3, 40, 70), torch.randn(2, 3, 50, 60)]
    cal = np.tile(np.arange(16, dtype=np.float32).reshape(4, 4), (2, 1, 1))
    samples = [sample(lidar2img=cal, view_missing=np.array([False, True])), sample()]
    pts = [torch.tensor([point(1.0, 0.0, 0.0)])] * 2
    out = DrivingDataPreprocessor(pad_size_divisor=32)(
        dict(inputs=dict(points=pts, img=imgs), data_samples=samples))
    stacked, geo = out["inputs"]["imgs"], out["inputs"]["batch_geometry"]
    assert stacked.shape == (2, 2, 3, 64, 96)  # max (50, 70) rounded up to 32
    assert torch.equal(stacked[0, :, :, :40, :70], imgs[0])
    assert not stacked[0, :, :, 40:].any() and not stacked[1, :, :, :, 60:].any()
    assert geo["lidar2img"].shape == (2, 2, 4, 4)
    assert torch.equal(geo["lidar2img"][0], torch.from_numpy(cal))
    assert geo["view_missing"].tolist() == [[False, True], [False, False]]
    assert geo["batch_input_shape"] == (64, 96)
    metas = [s.metainfo for s in out["data_samples"]]
    assert metas[0]["batch_input_shape"] == (64, 96) and metas[0]["pad_shape"] == (64, 96)
    assert metas[1]["pad_shape"] == (64, 64)


def test_dropped_modalities_are_flagged_and_filled_harmlessly():
    imgs = [torch.randn(2, 3, 32, 32), None]        # sample 1 lost its cameras
    pts = [torch.zeros(0, 5), torch.tensor([point(1.0, 1.0, 0.0)])]  # sample 0 lost LiDAR
    samples = [sample(token="a"), BaseDataElement(metainfo=dict(token="b"))]
    out = DrivingDataPreprocessor()(dict(inputs=dict(points=pts, img=imgs), data_samples=samples))
    inputs, geo = out["inputs"], out["inputs"]["batch_geometry"]
    assert geo["img_present"].tolist() == [True, False]
    assert geo["points_present"].tolist() == [False, True]
    assert not inputs["imgs"][1].any()
    assert geo["view_missing"][1].all() and not geo["view_missing"][0].any()
    # Identity (invertible) calibration for the sample without cameras, never zeros.
    assert torch.equal(geo["lidar2img"][1], torch.eye(4).expand(2, 4, 4))
    assert inputs["voxels"]["coors"][:, 0].tolist() == [1]


def test_use_images_false_and_a_list_of_sample_dicts():
    inputs = [dict(points=torch.tensor([point(1.0, 0.0, 0.0)]), img=torch.randn(2, 3, 32, 32))]
    out = DrivingDataPreprocessor(use_images=False)(dict(inputs=inputs, data_samples=[sample()]))
    assert out["inputs"]["imgs"] is None and out["inputs"]["voxels"]["coors"].shape == (1, 4)
    camera_only = DrivingDataPreprocessor(voxel=False)(dict(inputs=inputs, data_samples=[sample()]))
    assert camera_only["inputs"]["voxels"] is None
    assert camera_only["inputs"]["imgs"].shape == (1, 2, 3, 32, 32)


def test_images_without_calibration_fail_naming_the_sample():
    data = dict(inputs=dict(points=[torch.zeros(0, 5)], img=[torch.zeros(1, 3, 32, 32)]),
                data_samples=[BaseDataElement(metainfo=dict(token="tok42"))])
    with pytest.raises(KeyError, match="tok42.*lidar2img"):
        DrivingDataPreprocessor()(data)


def test_packed_and_collated_samples_go_through_end_to_end():
    pack = Pack3DDetInputs()
    packed = []
    for k in range(2):
        results = dict(points=np.array([point(float(k), 0.0, 0.0)], dtype=np.float32),
                       img=[np.zeros((32, 48, 3), np.float32)] * 6, token=f"t{k}",
                       lidar2img=np.tile(np.eye(4), (6, 1, 1)),
                       img_aug_matrix=np.tile(np.eye(4), (6, 1, 1)),
                       view_missing=np.zeros(6, bool), img_shape=(32, 48),
                       gt_bboxes_3d=np.zeros((1, 9), np.float32), gt_labels_3d=np.array([3]))
        packed.append(pack(results))
    out = DrivingDataPreprocessor()(pseudo_collate(packed), training=True)
    geo = out["inputs"]["batch_geometry"]
    assert out["inputs"]["imgs"].shape == (2, 6, 3, 32, 64)
    assert geo["lidar2img"].shape == (2, 6, 4, 4) and geo["lidar_aug_matrix"].shape == (2, 4, 4)
    assert out["inputs"]["voxels"]["coors"][:, [0, 3]].tolist() == [[0, 720], [1, 733]]
    assert out["data_samples"][1].gt_instances_3d.labels_3d.tolist() == [3]


def test_dynamic_voxelisation_keeps_every_in_range_point_with_its_sample_and_voxel():
    a = torch.tensor([point(0.01, 0.01, 0.01, i) for i in range(25)]      # one 0.075 m voxel
                     + [point(99.0, 0.0, 0.0)])                            # out of range
    b = torch.tensor([point(1.0, 1.0, 0.0)])
    pre = DrivingDataPreprocessor(use_images=False, voxel_layer=dict(max_num_points=-1))
    assert pre.dynamic and not DrivingDataPreprocessor().dynamic
    vox = pre(dict(inputs=dict(points=[a, b])), training=False)["inputs"]["voxels"]
    assert set(vox) == {"voxels", "coors"}
    assert torch.equal(vox["voxels"], torch.cat([a[:25], b]))             # nothing capped
    assert vox["coors"].dtype == torch.int32
    assert vox["coors"].tolist() == [[0, 25, 720, 720]] * 25 + [[1, 25, 733, 733]]
    # The capped layer keeps 10 of the 25.
    capped = DrivingDataPreprocessor(use_images=False)(dict(inputs=dict(points=[a, b])))
    assert capped["inputs"]["voxels"]["num_points"].tolist() == [10, 1]


def test_dynamic_voxels_of_a_dropped_lidar_are_empty():
    from interlace.domains.driving.models.detectors.modality_dropping import \
        drop_modalities_from_inputs
    pre = DrivingDataPreprocessor(use_images=False, voxel_layer=dict(max_num_points=-1))
    inputs = pre(dict(inputs=dict(points=[torch.tensor([point(1.0, 1.0, 0.0)])])))["inputs"]
    dropped = drop_modalities_from_inputs(inputs, ["lidar"])["voxels"]
    assert dropped["voxels"].shape == (0, 5) and dropped["coors"].shape == (0, 4)
