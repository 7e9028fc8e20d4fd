"""The nuScenes submission exporter: frame conversion, attribute rule, box budget and the
checks that keep DetectionEval from rejecting a file."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.detection.data_classes import DetectionBox
from nuscenes.utils.data_classes import Box
from pyquaternion import Quaternion

from interlace.domains.driving.data.nuscenes_names import CLASSES
from interlace.domains.driving.evaluation.box_frames import global_to_lidar, lidar_to_global
from interlace.domains.driving.evaluation.submission import (
    SubmissionError, build_submission, load_submission, sample_detections, validate_submission,
    write_submission)


def pose(yaw: float, translation, tilt: float = 0.0) -> np.ndarray:
    """4x4 rigid transform: rotation about z by `yaw` (then about x by `tilt`), translation."""
    q = Quaternion(axis=[0, 0, 1], radians=yaw) * Quaternion(axis=[1, 0, 0], radians=tilt)
    m = np.eye(4)
    m[:3, :3] = q.rotation_matrix
    m[:3, 3] = translation
    return m


LIDAR2EGO = pose(-math.pi / 2, [0.94, 0.0, 1.84])       # nuScenes LIDAR_TOP is turned -90 deg
EGO2GLOBAL = pose(2.1, [411.3, 1180.9, 0.0])


def devkit_box_to_lidar_row(box: Box, lidar2ego: np.ndarray, ego2global: np.ndarray) -> list:
    """The devkit's own way (as mmdet3d's info converter): global -> ego -> LiDAR."""
    box = copy.deepcopy(box)
    box.translate(-ego2global[:3, 3])
    box.rotate(Quaternion(matrix=ego2global[:3, :3]).inverse)
    box.translate(-lidar2ego[:3, 3])
    box.rotate(Quaternion(matrix=lidar2ego[:3, :3]).inverse)
    w, l, h = box.wlh
    return [*box.center, l, w, h, box.orientation.yaw_pitch_roll[0], *box.velocity[:2]]


def same_rotation(q1, q2) -> float:
    q1, q2 = np.asarray(q1), np.asarray(q2)
    return min(np.abs(q1 - q2).max(), np.abs(q1 + q2).max())


def test_export_round_trips_a_devkit_box_through_the_lidar_frame():
    globals_ = [Box([420.0, 1190.0, 1.0], [1.9, 4.5, 1.6], Quaternion(axis=[0, 0, 1], angle=0.3),
                    velocity=(3.0, -1.0, 0.0)),
                Box([400.5, 1170.2, 0.4], [0.6, 0.7, 1.8], Quaternion(axis=[0, 0, 1], angle=-2.9),
                    velocity=(0.05, 0.02, 0.0))]
    rows = np.array([devkit_box_to_lidar_row(b, LIDAR2EGO, EGO2GLOBAL) for b in globals_])
    entries = sample_detections("tok", rows, np.array([0.9, 0.8]), np.array([0, 8]),
                                LIDAR2EGO, EGO2GLOBAL)
    for box, entry in zip(globals_, entries):
        np.testing.assert_allclose(entry["translation"], box.center, atol=1e-6)
        np.testing.assert_allclose(entry["size"], box.wlh, atol=1e-6)
        assert same_rotation(entry["rotation"], box.orientation.elements) < 1e-6
        np.testing.assert_allclose(entry["velocity"], box.velocity[:2], atol=1e-6)
    assert [e["detection_name"] for e in entries] == ["car", "pedestrian"]
    # the car moves at ~3.2 m/s, the pedestrian at ~0.05 m/s
    assert [e["attribute_name"] for e in entries] == ["vehicle.moving", "pedestrian.standing"]


def test_global_to_lidar_inverts_lidar_to_global_even_with_tilted_poses():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(-40, 40, (20, 3)), rng.uniform(0.5, 5, (20, 3)),
                            rng.uniform(-math.pi, math.pi, (20, 1)), rng.normal(0, 3, (20, 2))], 1)
    lidar2ego, ego2global = pose(-1.56, [1, 0, 1.8], tilt=0.01), pose(0.7, [300, 900, 2], 0.02)
    back = global_to_lidar(*lidar_to_global(boxes, lidar2ego, ego2global), lidar2ego, ego2global)
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-9)
    np.testing.assert_allclose(np.cos(back[:, 6] - boxes[:, 6]), 1.0, atol=1e-6)
    # a tilt turns a little of (vx, vy) into vz, which the 2D velocity does not keep
    np.testing.assert_allclose(back[:, 7:], boxes[:, 7:], atol=0.05)


@pytest.mark.parametrize("name, speed, attribute", [
    ("car", 5.0, "vehicle.moving"), ("car", 0.0, "vehicle.parked"), ("bus", 0.1, "vehicle.stopped"),
    ("bicycle", 2.0, "cycle.with_rider"), ("motorcycle", 0.0, "cycle.without_rider"),
    ("barrier", 3.0, ""), ("traffic_cone", 0.0, "")])
def test_attribute_is_chosen_by_class_and_speed(name, speed, attribute):
    row = np.array([[10.0, 0, 0, 4, 2, 1.5, 0, speed, 0]])
    entry, = sample_detections("t", row, [0.5], [CLASSES.index(name)], np.eye(4), np.eye(4))
    assert entry["attribute_name"] == attribute


def random_rows(n: int, rng, radius: float = 20.0) -> np.ndarray:
    return np.concatenate([rng.uniform(-radius, radius, (n, 2)), np.zeros((n, 1)),
                           rng.uniform(1, 3, (n, 3)), np.zeros((n, 3))], 1)


def test_more_than_500_boxes_keeps_the_best_500_with_a_warning(caplog):
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 620)
    entries = sample_detections("t", random_rows(620, rng), scores, np.zeros(620), np.eye(4),
                                np.eye(4))
    assert len(entries) == 500
    kept = sorted(e["detection_score"] for e in entries)
    np.testing.assert_allclose(kept, np.sort(scores)[-500:])
    with pytest.raises(SubmissionError, match="620 boxes"):
        sample_detections("t", random_rows(620, rng), scores, np.zeros(620), np.eye(4),
                          np.eye(4), too_many="error")


def test_boxes_beyond_their_class_range_are_dropped():
    rows = np.array([[45.0, 0, 0, 4, 2, 1.5, 0, 0, 0]] * 2)
    # 45 m: inside the car range (50 m), outside the pedestrian range (40 m)
    entries = sample_detections("t", rows, [0.9, 0.8], [0, 8], np.eye(4), np.eye(4))
    assert [e["detection_name"] for e in entries] == ["car"]


def test_non_finite_predictions_are_refused():
    rows = np.array([[1.0, 0, 0, 4, 2, 1.5, np.nan, 0, 0]])
    with pytest.raises(SubmissionError, match="NaN"):
        sample_detections("tok", rows, [0.5], [0], np.eye(4), np.eye(4))


def good_submission() -> dict:
    rows = random_rows(3, np.random.default_rng(2))
    preds = [dict(token=t, bboxes_3d=rows, scores_3d=[0.9, 0.5, 0.1], labels_3d=[0, 5, 8],
                  lidar2ego=LIDAR2EGO, ego2global=EGO2GLOBAL) for t in ("a", "b")]
    return build_submission(preds, dict(use_lidar=True, use_camera=True))


def test_built_submission_passes_and_deserialises_in_the_devkit():
    submission = good_submission()
    assert submission["meta"] == dict(use_camera=True, use_lidar=True, use_radar=False,
                                      use_map=False, use_external=False)
    validate_submission(submission, expected_tokens={"a", "b"})
    boxes = EvalBoxes.deserialize(json.loads(json.dumps(submission))["results"], DetectionBox)
    assert len(boxes.all) == 6


def _break(submission: dict, how: str) -> None:
    box = submission["results"]["a"][0]
    if how == "nan":
        box["translation"][0] = float("nan")
    elif how == "name":
        box["detection_name"] = "tram"
    elif how == "attribute":
        box["attribute_name"] = "pedestrian.moving"   # box 0 is a car
    elif how == "size":
        box["size"][1] = 0.0
    elif how == "too_many":
        submission["results"]["a"] = [dict(box) for _ in range(501)]


@pytest.mark.parametrize("how, message", [
    ("nan", "translation must be 3 finite"), ("name", "'tram' is not a nuScenes"),
    ("attribute", "not valid for car"), ("size", "size must be positive"),
    ("too_many", "501 boxes")])
def test_validation_refuses_what_the_devkit_or_server_rejects(how, message):
    submission = good_submission()
    _break(submission, how)
    with pytest.raises(SubmissionError, match=message) as error:
        validate_submission(submission, source="preds/results_nusc.json")
    assert str(error.value).startswith("preds/results_nusc.json")


def test_validation_names_tokens_outside_the_split_and_missing_samples():
    with pytest.raises(SubmissionError, match=r"not in the evaluation split, e.g. \['b'\]"):
        validate_submission(good_submission(), expected_tokens={"a"})
    with pytest.raises(SubmissionError, match=r"have no entry .* e.g. \['c'\]"):
        validate_submission(good_submission(), expected_tokens={"a", "b", "c"})


def test_write_submission_writes_nothing_when_refused(tmp_path):
    path = tmp_path / "out" / "results_nusc.json"
    with pytest.raises(SubmissionError, match="results_nusc.json"):
        write_submission(good_submission(), path, expected_tokens={"a"})
    assert not path.exists()
    assert not path.parent.exists() or not list(path.parent.iterdir())  # no temp file left
    write_submission(good_submission(), path, expected_tokens={"a", "b"})
    assert load_submission(path)["results"].keys() == {"a", "b"}
    assert [p.name for p in path.parent.iterdir()] == ["results_nusc.json"]


def test_load_submission_names_the_file_of_bad_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"meta": {}, "results": ')
    with pytest.raises(SubmissionError, match="broken.json: not valid JSON"):
        load_submission(path)
