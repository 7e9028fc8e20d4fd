"""NuScenesDataset reads our info files and mmdet3d's as they are, hands the pipeline the
documented sample dict, and CBGSDataset balances classes as mmdet3d does."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
from mmengine.registry import DefaultScope

from interlace.domains.driving.data.class_balanced import CBGSDataset
from interlace.domains.driving.data.info_creation import create_nuscenes_infos
from interlace.domains.driving.data.info_files import (InfoFileError, load_info_file,
                                                       save_info_file)
from interlace.domains.driving.data.nuscenes_dataset import NuScenesDataset
from interlace.domains.driving.data.nuscenes_names import CAMERAS, CLASSES

# mmdet3d v1.x's class order (its NuScenesDataset.METAINFO), differing from ours.
MMDET3D_CLASSES = ("car", "truck", "trailer", "bus", "construction_vehicle", "bicycle",
                   "motorcycle", "pedestrian", "traffic_cone", "barrier")
CONTRACT_KEYS = {"lidar_points", "lidar_sweeps", "images", "ann_info", "token", "sample_idx",
                 "timestamp", "ego2global", "scene_token"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A generated v1.0-mini database (2 scenes x 3 samples) with its info files."""
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes
    root = tmp_path_factory.mktemp("nuscenes_mini")
    make_synthetic_nuscenes(root, scenes=2, samples_per_scene=3, version="v1.0-mini",
                            verbose=False)
    create_nuscenes_infos(root, "v1.0-mini", root, max_sweeps=10, progress=False)
    return root


def _dataset(db, **kwargs) -> NuScenesDataset:
    kwargs.setdefault("ann_file", "nuscenes_infos_train.pkl")
    kwargs.setdefault("serialize_data", False)  # mmengine's serialisation runs gc (~0.5 s)
    return NuScenesDataset(data_root=str(db), version="v1.0-mini", **kwargs)


def test_builds_from_a_config_dict_under_the_interlace_scope(db):
    from mmengine.registry import DATASETS
    with DefaultScope.overwrite_default_scope("interlace"):
        dataset = DATASETS.build(dict(type="NuScenesDataset", data_root=str(db),
                                      ann_file="nuscenes_infos_val.pkl", version="v1.0-mini",
                                      test_mode=True))
    assert isinstance(dataset, NuScenesDataset) and len(dataset) == 3
    assert dataset.metainfo["classes"] == CLASSES and dataset.metainfo["version"] == "v1.0-mini"


def test_sample_dict_has_the_contract_keys_absolute_paths_and_transforms(db):
    dataset = _dataset(db)
    info = dataset.get_data_info(2)
    assert CONTRACT_KEYS <= set(info) and info["sample_idx"] == 2
    assert os.path.isabs(info["lidar_points"]["lidar_path"])
    assert os.path.isfile(info["lidar_points"]["lidar_path"])
    assert list(info["images"]) == list(CAMERAS)
    for image in info["images"].values():
        assert os.path.isabs(image["img_path"]) and os.path.isfile(image["img_path"])
        intrinsics = np.eye(4)
        intrinsics[:3, :3] = image["cam2img"]
        np.testing.assert_allclose(image["lidar2img"], intrinsics @ image["lidar2cam"])
    lags = [sweep["time_lag"] for sweep in info["lidar_sweeps"]]
    assert len(lags) == 10 and lags == sorted(lags) and 0 < lags[0] and lags[-1] <= 0.55
    for sweep in info["lidar_sweeps"]:
        assert os.path.isfile(sweep["lidar_points"]["lidar_path"])
        assert sweep["sensor2lidar"].shape == (4, 4)
        np.testing.assert_allclose(sweep["sensor2lidar"],
                                   np.linalg.inv(sweep["lidar_points"]["lidar2sensor"]),
                                   atol=1e-9)


def test_ann_info_keeps_boxes_with_lidar_points_or_valid_flag(db):
    raw = load_info_file(db / "nuscenes_infos_train.pkl")[1]
    for use_valid_flag, field in ((False, "num_lidar_pts"), (True, "bbox_3d_isvalid")):
        dataset = _dataset(db, use_valid_flag=use_valid_flag)
        for index, sample in enumerate(raw):
            ann = dataset.get_data_info(index)["ann_info"]
            kept = [i for i in sample["instances"] if i[field] and i["bbox_label_3d"] >= 0]
            assert ann["gt_bboxes_3d"].shape == (len(kept), 9)
            assert ann["gt_bboxes_3d"].dtype == np.float32
            assert ann["gt_labels_3d"].dtype == np.int64
            np.testing.assert_allclose(ann["gt_bboxes_3d"],
                                       [i["bbox_3d"] + i["velocity"] for i in kept], rtol=1e-6)
            assert ann["gt_names"] == [CLASSES[i["bbox_label_3d"]] for i in kept]
            assert ann["attr_labels"].tolist() == [i["attr_label"] for i in kept]
            assert ann["num_lidar_pts"].tolist() == [i["num_lidar_pts"] for i in kept]


def test_a_class_subset_remaps_labels_and_drops_the_rest(db):
    full = _dataset(db).get_data_info(0)["ann_info"]
    subset = _dataset(db, metainfo=dict(classes=("pedestrian", "car"))).get_data_info(0)["ann_info"]
    wanted = [name for name in full["gt_names"] if name in ("pedestrian", "car")]
    assert subset["gt_names"] == wanted and wanted
    assert subset["gt_labels_3d"].tolist() == [("pedestrian", "car").index(n) for n in wanted]


def test_test_mode_has_eval_annotations_and_no_training_ones(db):
    info = _dataset(db, test_mode=True).get_data_info(0)
    assert "ann_info" not in info and info["eval_ann_info"]["gt_bboxes_3d"].shape[1] == 9
    info = _dataset(db, test_mode=True, load_eval_anns=False).get_data_info(0)
    assert "ann_info" not in info and "eval_ann_info" not in info


def test_prepare_data_adds_box_type_and_skips_empty_training_samples(db, tmp_path):
    metainfo, data_list = load_info_file(db / "nuscenes_infos_train.pkl")
    data_list = copy.deepcopy(data_list)
    data_list[1]["instances"] = []
    path = save_info_file(tmp_path / "one_empty.pkl", metainfo, data_list)
    seen = []
    dataset = NuScenesDataset(str(path), str(db), pipeline=[lambda r: seen.append(r) or r],
                              serialize_data=False)
    assert dataset.get_data_info(1)["ann_info"]["gt_bboxes_3d"].shape == (0, 9)
    assert dataset.prepare_data(1) is None and not seen  # mmengine then draws another
    result = dataset.prepare_data(0)
    assert result["box_type_3d"] == "LiDAR" and result["box_mode_3d"] == 0
    assert len(result["ann_info"]["gt_labels_3d"]) > 0
    kept = NuScenesDataset(str(path), str(db), filter_empty_gt=False, serialize_data=False)
    assert kept.prepare_data(1) is not None


def test_an_info_file_of_another_version_is_refused_naming_it(db):
    with pytest.raises(InfoFileError, match=r"nuscenes_infos_train\.pkl.*'v1\.0-mini'.*"
                                            r"'v1\.0-trainval'"):
        NuScenesDataset("nuscenes_infos_train.pkl", str(db), version="v1.0-trainval")


def test_an_old_v0_info_file_is_refused_with_the_conversion_hint(tmp_path):
    path = tmp_path / "old_infos.pkl"
    import pickle
    path.write_bytes(pickle.dumps({"infos": [], "metadata": {"version": "v1.0-mini"}}))
    with pytest.raises(InfoFileError, match=r"old_infos\.pkl: old mmdet3d v0\.x.*"
                                            r"update_infos_to_v2\.py"):
        NuScenesDataset(str(path), str(tmp_path))


def _as_mmdet3d_file(metainfo: dict, data_list: list[dict]) -> tuple[dict, list[dict]]:
    """What mmdet3d's create_data + update_infos_to_v2 write for the same samples: its own
    class order, float32 matrices, sweep paths under ./data/nuscenes, no scene_token /
    attr_label, NaN for unknown velocities."""
    def f32(matrix):
        return np.asarray(matrix, np.float32).tolist()

    mm_list = []
    for info in copy.deepcopy(data_list):
        info.pop("scene_token")
        info["ego2global"] = f32(info["ego2global"])
        for sweep in info["lidar_sweeps"]:
            points = sweep["lidar_points"]
            points["lidar_path"] = "./data/nuscenes/" + points["lidar_path"]
            points["lidar2sensor"] = f32(points["lidar2sensor"])
        for image in info["images"].values():
            image["lidar2cam"] = f32(image["lidar2cam"])
        for instance in info["instances"]:
            instance.pop("attr_label")
            if instance["bbox_label_3d"] >= 0:
                label = MMDET3D_CLASSES.index(CLASSES[instance["bbox_label_3d"]])
                instance["bbox_label"] = instance["bbox_label_3d"] = label
        info["instances"][0]["velocity"] = [float("nan"), float("nan")]
        mm_list.append(info)
    return dict(metainfo, categories={c: i for i, c in enumerate(MMDET3D_CLASSES)}), mm_list


def test_an_mmdet3d_written_info_file_loads_as_it_is(db, tmp_path):
    metainfo, data_list = load_info_file(db / "nuscenes_infos_train.pkl")
    path = save_info_file(tmp_path / "mmdet3d_infos_train.pkl",
                          *_as_mmdet3d_file(metainfo, data_list))
    ours = _dataset(db)
    theirs = NuScenesDataset(str(path), str(db), version="v1.0-mini", serialize_data=False)
    assert len(theirs) == len(ours) == 3
    for index in range(3):
        a, b = ours.get_data_info(index), theirs.get_data_info(index)
        assert b["scene_token"] is None
        assert b["lidar_points"]["lidar_path"] == a["lidar_points"]["lidar_path"]
        assert [s["lidar_points"]["lidar_path"] for s in b["lidar_sweeps"]] == \
            [s["lidar_points"]["lidar_path"] for s in a["lidar_sweeps"]]
        for sa, sb in zip(a["lidar_sweeps"], b["lidar_sweeps"]):
            np.testing.assert_allclose(sb["sensor2lidar"], sa["sensor2lidar"], atol=1e-3)
        for camera in CAMERAS:
            assert b["images"][camera]["img_path"] == a["images"][camera]["img_path"]
            np.testing.assert_allclose(b["images"][camera]["lidar2img"],
                                       a["images"][camera]["lidar2img"], rtol=1e-4, atol=1e-2)
        # labels are read by class name, not by position
        assert b["ann_info"]["gt_names"] == a["ann_info"]["gt_names"]
        np.testing.assert_array_equal(b["ann_info"]["gt_labels_3d"], a["ann_info"]["gt_labels_3d"])
        assert (b["ann_info"]["attr_labels"] == -1).all()
        assert np.isfinite(b["ann_info"]["gt_bboxes_3d"]).all()


class _LabelledSamples:
    """A stand-in dataset: sample i holds the classes in labels[i]."""

    def __init__(self, labels: list[list[int]], classes=("a", "b", "c")):
        self.labels, self.metainfo, self.initialised = labels, dict(classes=classes), False

    def full_init(self):
        self.initialised = True

    def __len__(self):
        return len(self.labels)

    def get_cat_ids(self, idx):
        return self.labels[idx]

    def __getitem__(self, idx):
        return idx


def test_cbgs_draws_every_class_equally_often():
    # a: samples 0-3, b: sample 4, c: sample 5 -> 6 class memberships over 3 classes, so
    # each class is drawn 6 // 3 = 2 times: sample 4 twice, sample 5 twice, two of 0-3.
    dataset = CBGSDataset(_LabelledSamples([[0], [0], [0], [0], [1], [2]]), seed=0)
    assert len(dataset) == 6
    drawn = [dataset[i] for i in range(len(dataset))]
    assert drawn.count(4) == 2 and drawn.count(5) == 2
    assert sum(drawn.count(i) for i in range(4)) == 2
    labels = [label for i in range(len(dataset)) for label in dataset.get_cat_ids(i)]
    assert [labels.count(k) for k in range(3)] == [2, 2, 2]  # was 4 : 1 : 1


def test_cbgs_counts_multi_class_samples_and_ignores_absent_and_dontcare_classes():
    # a in {0, 1, 2}, b in {2}, c nowhere, -1 ignored -> 4 memberships over 2 present
    # classes: 2 draws each (mmdet3d would divide by zero on class c).
    dataset = CBGSDataset(_LabelledSamples([[0], [0, -1], [0, 1]]), seed=1, lazy_init=True)
    assert not dataset.dataset.initialised
    assert len(dataset) == 4 and dataset.dataset.initialised
    assert dataset.class_sample_indices[1] == [2, 2]
    assert all(i in (0, 1, 2) for i in dataset.class_sample_indices[0])
    assert sorted(dataset.class_sample_indices) == [0, 1]


def test_cbgs_wraps_the_nuscenes_dataset_from_a_config(db):
    from mmengine.registry import DATASETS
    with DefaultScope.overwrite_default_scope("interlace"):
        dataset = DATASETS.build(dict(type="CBGSDataset", seed=0, lazy_init=True, dataset=dict(
            type="NuScenesDataset", data_root=str(db), ann_file="nuscenes_infos_train.pkl")))
    inner = dataset.dataset
    memberships = sum(len(inner.get_cat_ids(i)) for i in range(len(inner)))
    present = {c for i in range(len(inner)) for c in inner.get_cat_ids(i)}
    assert len(dataset) == (memberships // len(present)) * len(present)
    assert dataset.metainfo["classes"] == CLASSES
