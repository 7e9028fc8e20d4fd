"""Ground-truth database creation from an mmdet3d v1.x info file, and pasting objects."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from interlace.core.engine.registry import TRANSFORMS
from interlace.core.ops.box_geometry import points_in_boxes
from interlace.core.ops.rotated_iou import bev_iou_rotated
from interlace.domains.driving.data import gt_paste
from interlace.domains.driving.data.gt_paste import ObjectSample, create_groundtruth_database
from interlace.domains.driving.data.nuscenes_names import CLASSES


def _translation(x, y=0.0):
    m = np.eye(4)
    m[:2, 3] = [x, y]
    return m


def _points_in_box(rng, box, n):
    """n points strictly inside a (x, y, z, l, w, h, yaw) box."""
    local = rng.uniform(-0.45, 0.45, (n, 3)) * np.asarray(box[3:6])
    c, s = np.cos(box[6]), np.sin(box[6])
    xy = local[:, :2] @ np.array([[c, s], [-s, c]]) + box[:2]
    return np.column_stack([xy, local[:, 2] + box[2], rng.uniform(0, 100, n), np.zeros(n)])


def _instance(box, label, velocity=(1.0, -0.5), valid=True):
    return dict(bbox_3d=list(box), bbox_label_3d=label, velocity=list(velocity),
                num_lidar_pts=10, bbox_3d_isvalid=valid)


BOX_A = [10, 0, 0, 4, 2, 2, 0.3]          # car
BOX_B = [-10, 5, 0, 1, 1, 2, 0.0]         # pedestrian
BOX_C = [10.5, 0.5, 0, 4, 2, 2, 0.0]      # car overlapping A
BOX_D = [30, 30, 0, 4, 2, 2, 1.0]         # car
BOX_E = [0, 20, 0, 1, 1, 2, 0.0]          # pedestrian with 2 points


@pytest.fixture
def database(tmp_path):
    """A data root with two samples (one with a sweep) and its GT database."""
    rng = np.random.default_rng(0)
    (tmp_path / "samples/LIDAR_TOP").mkdir(parents=True)
    (tmp_path / "sweeps/LIDAR_TOP").mkdir(parents=True)
    far = np.column_stack([rng.uniform(-40, -20, (100, 2)), np.zeros((100, 3))])
    key0 = np.concatenate([_points_in_box(rng, BOX_A, 50), _points_in_box(rng, BOX_B, 20), far])
    key0.astype(np.float32).tofile(tmp_path / "samples/LIDAR_TOP/k0.pcd.bin")
    # The sweep's ego was 1 m behind (global x 99 vs 100): its points are 1 m further.
    sweep = _points_in_box(rng, BOX_A, 10)
    sweep[:, 0] += 1.0
    sweep.astype(np.float32).tofile(tmp_path / "sweeps/LIDAR_TOP/s0.pcd.bin")
    key1 = np.concatenate([_points_in_box(rng, BOX_C, 30), _points_in_box(rng, BOX_D, 40),
                           _points_in_box(rng, BOX_E, 2)])
    key1.astype(np.float32).tofile(tmp_path / "samples/LIDAR_TOP/k1.pcd.bin")
    data_list = [
        dict(sample_idx=0, token="t0", timestamp=100.0, ego2global=_translation(100.0),
             lidar_points=dict(lidar_path="k0.pcd.bin", num_pts_feats=5, lidar2ego=np.eye(4)),
             lidar_sweeps=[dict(lidar_points=dict(lidar_path="sweeps/LIDAR_TOP/s0.pcd.bin",
                                                  lidar2ego=np.eye(4)),
                                ego2global=_translation(99.0), timestamp=99.95)],
             instances=[_instance(BOX_A, 0), _instance(BOX_B, 8),
                        _instance([0, 0, 0, 1, 1, 1, 0], -1),
                        _instance([0, 0, 0, 1, 1, 1, 0], 0, valid=False)]),
        dict(sample_idx=1, token="t1", timestamp=200.0, ego2global=np.eye(4),
             lidar_points=dict(lidar_path="k1.pcd.bin", num_pts_feats=5, lidar2ego=np.eye(4)),
             lidar_sweeps=[],
             instances=[_instance(BOX_C, 0), _instance(BOX_D, 0),
                        _instance(BOX_E, 8, velocity=(np.nan, np.nan))]),
        dict(sample_idx=2, token="t2", timestamp=300.0, ego2global=np.eye(4),
             lidar_points=dict(lidar_path="missing.pcd.bin", num_pts_feats=5,
                               lidar2ego=np.eye(4)),
             instances=[_instance(BOX_D, 0)]),
    ]
    info_path = tmp_path / "nuscenes_infos_train.pkl"
    metainfo = dict(categories={name: i for i, name in enumerate(CLASSES)}, version="v1.0-mini")
    info_path.write_bytes(pickle.dumps(dict(metainfo=metainfo, data_list=data_list)))
    dbinfos = create_groundtruth_database(info_path, tmp_path, tmp_path, max_sweeps=10)
    return tmp_path, dbinfos, key0, sweep


def test_database_holds_each_box_points_relative_to_its_centre(database):
    root, dbinfos, key0, sweep = database
    assert sorted(dbinfos) == ["car", "pedestrian"]
    assert len(dbinfos["car"]) == 3 and len(dbinfos["pedestrian"]) == 2
    car_a = dbinfos["car"][0]
    assert car_a["path"] == "nuscenes_gt_database/0_car_0.bin" and car_a["sample_idx"] == 0
    assert car_a["num_points_in_gt"] == 60                    # 50 key + 10 from the sweep
    np.testing.assert_allclose(car_a["box3d_lidar"], BOX_A + [1.0, -0.5], atol=1e-6)
    stored = np.fromfile(root / car_a["path"], np.float32).reshape(-1, 5)
    stored[:, :3] += np.float32(BOX_A[:3])
    moved_sweep = sweep.copy()
    moved_sweep[:, 0] -= 1.0
    moved_sweep[:, 4] = 0.05
    expected = np.concatenate([key0[:50], moved_sweep])
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    assert dbinfos["pedestrian"][1]["box3d_lidar"][7:].tolist() == [0.0, 0.0]  # NaN velocity
    group_ids = [i["group_id"] for infos in dbinfos.values() for i in infos]
    assert len(set(group_ids)) == 5
    assert pickle.loads((root / "nuscenes_dbinfos_train.pkl").read_bytes()).keys() == dbinfos.keys()
    assert not list(root.rglob(".*tmp*"))                     # no temporary file left


def _scene_results(seed=1):
    rng = np.random.default_rng(seed)
    points = np.column_stack([rng.uniform(-40, 40, (20000, 2)), rng.uniform(-1, 1, 20000),
                              rng.uniform(0, 100, 20000), rng.uniform(0, 0.5, 20000)])
    existing = np.array([[-10, 5, 0, 2, 2, 2, 0.5, 0, 0]], np.float32)   # covers BOX_B
    return dict(points=points.astype(np.float32), gt_bboxes_3d=existing,
                gt_labels_3d=np.array([8]), gt_names=["pedestrian"])


def test_object_sample_pastes_non_overlapping_objects_with_exactly_their_points(database):
    root = database[0]
    np.random.seed(0)
    paste = TRANSFORMS.build(dict(
        type="ObjectSample",
        db_sampler=dict(data_root=str(root), info_path="nuscenes_dbinfos_train.pkl", rate=1.0,
                        prepare=dict(filter_by_min_points=dict(car=5, pedestrian=5)),
                        classes=CLASSES, sample_groups=dict(car=3, pedestrian=2))))
    assert isinstance(paste, ObjectSample)
    results = paste(_scene_results())
    boxes = results["gt_bboxes_3d"]
    # A and C overlap: one of them is rejected. B collides with the existing box and E
    # has too few points: no pedestrian is pasted.
    assert len(boxes) == 3 and results["gt_labels_3d"].tolist() == [8, 0, 0]
    assert results["gt_names"] == ["pedestrian", "car", "car"]
    iou = bev_iou_rotated(torch.from_numpy(boxes), torch.from_numpy(boxes))
    assert torch.equal(iou > 0, torch.eye(3, dtype=torch.bool))
    pasted = boxes[1:]
    expected = []
    for box in pasted:
        info = next(i for i in gt_paste.DataBaseSampler(
            root / "nuscenes_dbinfos_train.pkl", root, sample_groups=dict(car=1)).samplers[
            "car"].infos if np.allclose(i["box3d_lidar"], box))
        pts = np.fromfile(root / info["path"], np.float32).reshape(-1, 5)
        pts[:, :3] += box[:3]                     # the lags stay as stored
        expected.append(pts)
    expected = np.concatenate(expected)
    inside = points_in_boxes(torch.from_numpy(results["points"]),
                             torch.from_numpy(pasted)).any(dim=1).numpy()
    got = results["points"][inside]
    assert len(got) == len(expected)
    order = lambda p: p[np.lexsort(p[:, :3].T)]  # noqa: E731
    np.testing.assert_allclose(order(got), order(expected), atol=1e-5)
    # Scene points outside the pasted boxes are all still there.
    scene = _scene_results()["points"]
    outside = ~points_in_boxes(torch.from_numpy(scene), torch.from_numpy(pasted)).any(1).numpy()
    assert len(results["points"]) == len(expected) + outside.sum() and outside.sum() < len(scene)


def _paste_car_a(root, **sampler):
    """Paste car A (50 key-frame + 10 sweep points) into a scene without cars; returns
    the pasted points and car A's stored points."""
    paste = ObjectSample(dict(data_root=root, info_path="nuscenes_dbinfos_train.pkl",
                              sample_groups=dict(car=1), **sampler))
    cars = paste.db_sampler.samplers["car"]
    paste.db_sampler.samplers["car"] = type(cars)([i for i in cars.infos if i["gt_idx"] == 0
                                                   and i["sample_idx"] == 0])
    results = paste(_scene_results())
    assert results["gt_labels_3d"].tolist() == [8, 0]
    stored = np.fromfile(root / "nuscenes_gt_database/0_car_0.bin", np.float32).reshape(-1, 5)
    return results["points"][:len(stored)], stored


def test_database_stores_the_sweeps_time_lag_and_pasted_points_keep_it(database):
    root = database[0]
    pasted, stored = _paste_car_a(root)
    # The database end: key-frame points at lag 0, the sweep's points at its 0.05 s.
    np.testing.assert_allclose(np.unique(stored[:, 4]), [0.0, 0.05], atol=1e-6)
    assert (stored[:, 4] > 0).sum() == 10
    # The paste end: pasted points come first, moved to the box, lags untouched.
    np.testing.assert_array_equal(pasted[:, 3:], stored[:, 3:])
    np.testing.assert_allclose(pasted[:, :3], stored[:, :3] + np.float32(BOX_A[:3]), atol=1e-5)


def test_zero_time_lag_still_puts_pasted_points_in_the_key_frame_when_asked(database):
    pasted, stored = _paste_car_a(database[0], zero_time_lag=True)
    assert not pasted[:, 4].any() and stored[:, 4].any()


def test_object_sample_does_nothing_when_the_groups_are_full(database):
    root = database[0]
    paste = ObjectSample(dict(data_root=root, info_path=root / "nuscenes_dbinfos_train.pkl",
                              sample_groups=dict(pedestrian=1)))
    results = paste(_scene_results())
    assert len(results["gt_bboxes_3d"]) == 1 and len(results["points"]) == 20000


def test_unknown_class_in_sample_groups_is_rejected(database):
    root = database[0]
    with pytest.raises(ValueError, match="'tram'"):
        ObjectSample(dict(data_root=root, info_path="nuscenes_dbinfos_train.pkl",
                          sample_groups=dict(tram=2)))


def test_info_file_of_the_wrong_layout_is_rejected(tmp_path):
    bad = tmp_path / "old.pkl"
    bad.write_bytes(pickle.dumps([{"token": "x"}]))
    with pytest.raises(ValueError, match="old.pkl: not an mmdet3d v1.x info file"):
        create_groundtruth_database(bad, tmp_path, tmp_path)
