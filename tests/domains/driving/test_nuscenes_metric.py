"""`NuScenesMetric` against a tiny hand-written nuScenes database (one mini_val scene, two
samples, one object of every class): the devkit's DetectionEval must give a perfect
score to the ground truth exported through the metric, and the metric must refuse an
incomplete submission before the devkit sees it."""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset
from mmengine.evaluator import Evaluator
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement, InstanceData
from nuscenes.utils.data_classes import Box
from PIL import Image
from pyquaternion import Quaternion

from interlace.core.engine.registry import DATASETS, MODELS
from interlace.domains.driving.data.nuscenes_names import (ATTRIBUTES, CATEGORY_OF_CLASS,
                                                           CLASSES, attribute_for)
from interlace.domains.driving.evaluation import NuScenesMetric, SubmissionError
from interlace.tools import test as tools_test
from tests.fixtures.tools import ROOT

VERSION = "v1.0-mini"
LIDAR_TRANSLATION = [0.94, 0.0, 1.84]
LIDAR_ROTATION = Quaternion(axis=[0, 0, 1], radians=-math.pi / 2)
EGO_POSES = [([600.0, 1600.0, 0.0], 0.4), ([604.6, 1601.9, 0.0], 0.45)]   # (xyz, yaw)
TIMESTAMPS = [1_500_000_000_000_000, 1_500_000_000_500_000]              # 0.5 s apart
# One object per class: ego-frame (x, y) at sample 0, (w, l, h), yaw, global (vx, vy).
OBJECTS = {
    "car": ((12, 3), (1.9, 4.5, 1.6), 0.1, (4.0, 1.0)),
    "truck": ((-15, -6), (2.5, 7.0, 3.0), 2.0, (0.0, 0.0)),
    "construction_vehicle": ((20, 12), (2.8, 6.0, 3.2), -1.0, (0.0, 0.0)),
    "bus": ((-25, 8), (2.9, 11.0, 3.4), 0.5, (0.1, 0.0)),
    "trailer": ((30, -10), (2.4, 9.0, 3.5), 1.5, (2.0, -2.0)),
    "barrier": ((8, -9), (2.4, 0.5, 1.0), 0.0, (0.0, 0.0)),
    "motorcycle": ((-6, 5), (0.8, 2.1, 1.4), 3.0, (5.0, 0.0)),
    "bicycle": ((4, 14), (0.6, 1.7, 1.3), -2.5, (0.0, 0.0)),
    "pedestrian": ((-3, -4), (0.6, 0.7, 1.8), 1.0, (1.0, 0.5)),
    "traffic_cone": ((6, 6), (0.4, 0.4, 0.8), 0.0, (0.0, 0.0)),
}


def _pose_matrix(translation, quaternion: Quaternion) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = quaternion.rotation_matrix
    m[:3, 3] = translation
    return m


def write_tiny_nuscenes(root: Path) -> dict:
    """Write the tables (and an info file) of a two-sample ``v1.0-mini`` database.

    Returns ``infos`` (info-file samples with ``token``, ``lidar2ego``, ``ego2global``)
    and ``gt``: per sample the ``(N, 9)`` LiDAR-frame boxes and labels, computed with the
    devkit's ``Box`` (not with the code under test).
    """
    tables: dict[str, list] = {k: [] for k in (
        "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor",
        "ego_pose", "log", "scene", "sample", "sample_data", "sample_annotation", "map")}
    tables["category"] = [dict(token=f"cat-{n}", name=CATEGORY_OF_CLASS[n], description="")
                          for n in CLASSES]
    tables["attribute"] = [dict(token=f"attr-{a}", name=a, description="") for a in ATTRIBUTES]
    tables["visibility"] = [dict(token="4", level="v80-100", description="")]
    tables["sensor"] = [dict(token="sensor-lidar", channel="LIDAR_TOP", modality="lidar")]
    tables["calibrated_sensor"] = [dict(
        token="cs-lidar", sensor_token="sensor-lidar", translation=LIDAR_TRANSLATION,
        rotation=list(LIDAR_ROTATION.elements), camera_intrinsic=[])]
    tables["log"] = [dict(token="log-0", logfile="", vehicle="", date_captured="",
                          location="boston-seaport")]
    (root / "maps").mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8)).save(root / "maps" / "map.png")
    tables["map"] = [dict(token="map-0", log_tokens=["log-0"], category="semantic_prior",
                          filename="maps/map.png")]
    samples = [f"sample-{i}" for i in range(2)]
    tables["scene"] = [dict(token="scene-0", log_token="log-0", nbr_samples=2,
                            first_sample_token=samples[0], last_sample_token=samples[1],
                            name="scene-0103", description="")]  # a mini_val scene name
    lidar2ego = _pose_matrix(LIDAR_TRANSLATION, LIDAR_ROTATION)
    infos, gt = [], []
    for i, token in enumerate(samples):
        ego_xyz, ego_yaw = EGO_POSES[i]
        ego_q = Quaternion(axis=[0, 0, 1], radians=ego_yaw)
        tables["sample"].append(dict(token=token, timestamp=TIMESTAMPS[i], scene_token="scene-0",
                                     prev=samples[i - 1] if i else "",
                                     next=samples[i + 1] if i + 1 < 2 else ""))
        tables["ego_pose"].append(dict(token=f"ego-{i}", timestamp=TIMESTAMPS[i],
                                       translation=ego_xyz, rotation=list(ego_q.elements)))
        tables["sample_data"].append(dict(
            token=f"sd-{i}", sample_token=token, ego_pose_token=f"ego-{i}",
            calibrated_sensor_token="cs-lidar", timestamp=TIMESTAMPS[i], fileformat="pcd",
            is_key_frame=True, height=0, width=0, filename=f"samples/LIDAR_TOP/{i}.pcd.bin",
            prev=f"sd-{i - 1}" if i else "", next=f"sd-{i + 1}" if i + 1 < 2 else ""))
        ego2global = _pose_matrix(ego_xyz, ego_q)
        infos.append(dict(sample_idx=i, token=token, ego2global=ego2global,
                          lidar_points=dict(lidar2ego=lidar2ego)))
        rows, labels = [], []
        for label, (name, (xy, wlh, yaw, velocity)) in enumerate(OBJECTS.items()):
            ego0_xyz, ego0_yaw = EGO_POSES[0]
            start = _pose_matrix(ego0_xyz, Quaternion(axis=[0, 0, 1], radians=ego0_yaw)) \
                @ np.array([xy[0], xy[1], wlh[2] / 2, 1.0])
            centre = start[:3] + np.array([*velocity, 0.0]) * (TIMESTAMPS[i] - TIMESTAMPS[0]) / 1e6
            rotation = Quaternion(axis=[0, 0, 1], radians=yaw + ego0_yaw)
            attribute = attribute_for(name, math.hypot(*velocity))
            tables["sample_annotation"].append(dict(
                token=f"ann-{i}-{name}", sample_token=token, instance_token=f"inst-{name}",
                visibility_token="4", attribute_tokens=[f"attr-{attribute}"] if attribute else [],
                translation=list(centre), size=list(wlh), rotation=list(rotation.elements),
                prev=f"ann-{i - 1}-{name}" if i else "", next=f"ann-{i + 1}-{name}" if i + 1 < 2 else "",
                num_lidar_pts=25, num_radar_pts=0))
            box = Box(centre, wlh, rotation, velocity=(*velocity, 0.0))
            box.translate(-ego2global[:3, 3])
            box.rotate(ego_q.inverse)
            box.translate(-lidar2ego[:3, 3])
            box.rotate(LIDAR_ROTATION.inverse)
            rows.append([*box.center, wlh[1], wlh[0], wlh[2], box.orientation.yaw_pitch_roll[0],
                         *box.velocity[:2]])
            labels.append(label)
        gt.append((np.array(rows), np.array(labels)))
    tables["instance"] = [dict(token=f"inst-{n}", category_token=f"cat-{n}", nbr_annotations=2,
                               first_annotation_token=f"ann-0-{n}",
                               last_annotation_token=f"ann-1-{n}") for n in CLASSES]
    (root / VERSION).mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (root / VERSION / f"{name}.json").write_text(json.dumps(rows))
    with open(root / "nuscenes_infos_val.pkl", "wb") as stream:
        pickle.dump(dict(metainfo=dict(version=VERSION), data_list=infos), stream)
    return dict(infos=infos, gt=gt)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_nuscenes")
    return root, write_tiny_nuscenes(root)


def gt_predictions(database: dict, shift: float = 0.0) -> list[dict]:
    """Data-sample dicts (as mmengine's Evaluator hands them over) carrying the GT."""
    out = []
    for info, (rows, labels) in zip(database["infos"], database["gt"]):
        boxes = rows.copy()
        boxes[:, 0] += shift
        out.append(dict(token=info["token"], lidar2ego=info["lidar_points"]["lidar2ego"],
                        ego2global=info["ego2global"],
                        pred_instances_3d=dict(bboxes_3d=torch.from_numpy(boxes),
                                               scores_3d=torch.ones(len(rows)),
                                               labels_3d=torch.from_numpy(labels))))
    return out


def make_metric(root: Path, out: Path, **kwargs) -> NuScenesMetric:
    return NuScenesMetric(data_root=str(root), ann_file="nuscenes_infos_val.pkl",
                          jsonfile_prefix=str(out), **kwargs)


def test_ground_truth_scores_perfectly_and_summary_is_written(tiny, tmp_path):
    root, database = tiny
    metric = make_metric(root, tmp_path)
    metric.process({}, gt_predictions(database))
    scores = metric.compute_metrics(metric.results)
    assert scores["mAP"] == pytest.approx(1.0, abs=1e-6)
    assert scores["NDS"] == pytest.approx(1.0, abs=1e-3)
    for name in ("mATE", "mASE", "mAOE", "mAVE", "mAAE"):
        assert scores[name] < 1e-3, name
    assert all(scores[f"AP_{n}"] == pytest.approx(1.0) for n in CLASSES)
    summary = json.loads((tmp_path / "metrics_summary.json").read_text())
    assert summary["mean_ap"] == pytest.approx(scores["mAP"])
    submission = json.loads((tmp_path / "results_nusc.json").read_text())
    assert submission["meta"]["use_lidar"] and submission["meta"]["use_camera"]


def test_shifted_boxes_score_lower_through_the_evaluator(tiny, tmp_path):
    root, database = tiny
    evaluator = Evaluator([make_metric(root, tmp_path)])
    samples = []
    for sample in gt_predictions(database, shift=1.0):
        element = BaseDataElement(metainfo=dict(token=sample["token"], sample_idx=0,
                                                lidar2ego=sample["lidar2ego"],
                                                ego2global=sample["ego2global"]))
        element.pred_instances_3d = InstanceData(**sample["pred_instances_3d"])
        samples.append(element)
    evaluator.process(samples)
    scores = evaluator.evaluate(len(samples))
    # a 1 m error misses the 0.5 m threshold, matches at 1 (barely), 2 and 4 m
    assert 0.4 < scores["nuscenes/mAP"] < 0.8
    assert scores["nuscenes/mATE"] == pytest.approx(1.0, abs=0.02)


def test_poses_and_token_come_from_the_info_file_by_sample_idx(tiny, tmp_path):
    root, database = tiny
    metric = make_metric(root, tmp_path, format_only=True)
    samples = gt_predictions(database)
    for index, sample in enumerate(samples):
        for key in ("token", "lidar2ego", "ego2global"):
            sample.pop(key)
        sample["sample_idx"] = index
    metric.process({}, samples)
    assert metric.compute_metrics(metric.results) == {}
    submission = json.loads((tmp_path / "results_nusc.json").read_text())
    assert set(submission["results"]) == {"sample-0", "sample-1"}
    car = submission["results"]["sample-1"][0]
    ann = next(a for a in json.loads((root / VERSION / "sample_annotation.json").read_text())
               if a["token"] == "ann-1-car")
    np.testing.assert_allclose(car["translation"], ann["translation"], atol=1e-6)
    assert not (tmp_path / "metrics_summary.json").exists()  # format_only scores nothing


def test_format_only_needs_no_database(tmp_path, tiny):
    root, database = tiny
    alone = tmp_path / "infos_only"
    alone.mkdir()
    (alone / "nuscenes_infos_val.pkl").write_bytes((root / "nuscenes_infos_val.pkl").read_bytes())
    metric = make_metric(alone, tmp_path / "sub", format_only=True)
    metric.process({}, gt_predictions(database))
    assert metric.compute_metrics(metric.results) == {}
    assert (tmp_path / "sub" / "results_nusc.json").is_file()


def test_missing_samples_are_refused_before_the_devkit_runs(tiny, tmp_path):
    root, database = tiny
    metric = make_metric(root, tmp_path)
    metric.process({}, gt_predictions(database)[:1])
    with pytest.raises(SubmissionError, match=r"(?s)results_nusc.json: .*'sample-1'"):
        metric.compute_metrics(metric.results)
    assert not (tmp_path / "results_nusc.json").exists()


# -- tools/test.py --format-only with a toy detector that echoes the GT -------------------

@DATASETS.register_module(force=True)
class TinyGTEchoDataset(BaseDataset):
    """The tiny database's samples; each carries its GT boxes for `GTEchoDetector`."""

    def __init__(self, root: str, **kwargs):
        self.root = root
        super().__init__(ann_file="", serialize_data=False, **kwargs)

    def load_data_list(self) -> list[dict]:
        database = write_tiny_nuscenes(Path(self.root))
        return [dict(info, boxes=rows, labels=labels)
                for info, (rows, labels) in zip(database["infos"], database["gt"])]

    def prepare_data(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        sample = BaseDataElement(metainfo=dict(
            token=info["token"], sample_idx=idx, ego2global=info["ego2global"],
            lidar2ego=info["lidar_points"]["lidar2ego"]))
        sample.gt = InstanceData(boxes=torch.from_numpy(info["boxes"]),
                                 labels=torch.from_numpy(info["labels"]))
        return dict(inputs=torch.zeros(1), data_samples=sample)


@MODELS.register_module(force=True)
class GTEchoDetector(BaseModel):
    """Predicts each sample's GT boxes with score 1 (one weight, so it has a checkpoint)."""

    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        if mode != "predict":
            raise ValueError("GTEchoDetector only predicts")
        for sample in data_samples:
            sample.pred_instances_3d = InstanceData(
                bboxes_3d=sample.gt.boxes, scores_3d=torch.ones(len(sample.gt.boxes)),
                labels_3d=sample.gt.labels)
        return data_samples


def test_test_tool_format_only_writes_the_submission(tmp_path):
    root = tmp_path / "db"
    config = tmp_path / "echo_config.py"
    config.write_text(f"""
_base_ = [{str(ROOT / 'configs' / '_base_' / 'default_runtime.py')!r}]
custom_imports = dict(imports=['tests.domains.driving.test_nuscenes_metric'])
model = dict(type='GTEchoDetector')
test_dataloader = dict(batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type='TinyGTEchoDataset', root={str(root)!r}))
test_evaluator = dict(type='NuScenesMetric', data_root={str(root)!r},
                      ann_file='nuscenes_infos_val.pkl', modality=dict(use_lidar=True))
test_cfg = dict()
log_level = 'WARNING'
""")
    checkpoint = tmp_path / "echo.pth"
    torch.save(dict(state_dict=GTEchoDetector().state_dict(), meta=dict()), checkpoint)
    assert tools_test.main([str(config), str(checkpoint), "--work-dir", str(tmp_path / "work"),
                           "--format-only"]) == 0
    submission = json.loads((tmp_path / "work" / "results_nusc.json").read_text())
    assert submission["meta"]["use_lidar"] and not submission["meta"]["use_camera"]
    assert {len(boxes) for boxes in submission["results"].values()} == {len(CLASSES)}
    assert not (tmp_path / "work" / "metrics_summary.json").exists()
