"""The motion diagnosis (interlace.domains.driving.evaluation.motion_diagnosis, run by
tools/analysis_tools/motion_report.py) on the tiny hand-written database of
test_nuscenes_metric, whose objects move at known constant velocities:

  moving (> 1 m/s)   car 4.123, trailer 2.828, motorcycle 5.0, pedestrian 1.118 m/s
  parked (< 0.2 m/s) truck, construction_vehicle, bicycle 0, bus 0.1 m/s

Each object is annotated in both samples, so every class has two GT boxes; the vehicle
group has 4 moving and 6 parked objects. Predictions are the GT tables themselves,
edited, so every expected number is computed by hand."""
from __future__ import annotations

import contextlib
import io
import json
import math
from typing import Callable, Optional

import pytest
from nuscenes import NuScenes
from nuscenes.eval.detection.utils import category_to_detection_name
from pyquaternion import Quaternion

from interlace.core.engine.cli import ToolError
from interlace.domains.driving.data.nuscenes_names import attribute_for
from interlace.domains.driving.evaluation.motion_diagnosis import (MOTION_CLASSES,
                                                                   format_table,
                                                                   motion_diagnosis)
from interlace.domains.driving.evaluation.submission import SubmissionError, make_meta
from interlace.tools import motion_report
from tests.domains.driving.test_nuscenes_metric import VERSION, write_tiny_nuscenes
from tests.fixtures.tools import run_tool

SPEED = {"car": math.hypot(4, 1), "trailer": math.hypot(2, -2), "motorcycle": 5.0,
         "pedestrian": math.hypot(1, 0.5), "bus": 0.1}
MOVING = ("car", "trailer", "motorcycle", "pedestrian")
PARKED = ("truck", "construction_vehicle", "bus", "bicycle")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_motion")
    write_tiny_nuscenes(root)
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=VERSION, dataroot=str(root), verbose=False)
    return root, nusc


def gt_submission(nusc: NuScenes, edit: Optional[Callable[[dict], dict]] = None) -> dict:
    """The database's annotations as a submission (score 1, the devkit's GT velocity),
    each box passed through `edit` when given."""
    results = {}
    for sample in nusc.sample:
        boxes = []
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            name = category_to_detection_name(ann["category_name"])
            velocity = [float(v) for v in nusc.box_velocity(token)[:2]]
            box = dict(sample_token=sample["token"], translation=list(ann["translation"]),
                       size=list(ann["size"]), rotation=list(ann["rotation"]),
                       velocity=velocity, detection_name=name, detection_score=1.0,
                       attribute_name=attribute_for(name, math.hypot(*velocity)))
            boxes.append(edit(box) if edit else box)
        results[sample["token"]] = boxes
    return dict(meta=make_meta(dict(use_lidar=True)), results=results)


def diagnose_file(tmp_path, nusc: NuScenes, submission: dict, **kwargs) -> dict:
    path = tmp_path / "results_nusc.json"
    path.write_text(json.dumps(submission))
    return motion_diagnosis(nusc, path, "mini_val", **kwargs)


def test_ground_truth_as_predictions_is_perfect(tiny, tmp_path):
    _, nusc = tiny
    report = diagnose_file(tmp_path, nusc, gt_submission(nusc))
    rows = report["classes"]
    assert set(rows) == set(MOTION_CLASSES)  # barrier and traffic_cone do not move
    for name in MOTION_CLASSES:
        assert rows[name]["gt"] == rows[name]["pred"] == rows[name]["matched"] == 2, name
    for name in MOVING:
        row = rows[name]
        assert (row["moving"], row["gt_moving"], row["parked"]) == (2, 2, 0), name
        assert row["moving_vel_err"] == pytest.approx(0, abs=1e-9)
        assert row["moving_zero_vel_err"] == pytest.approx(SPEED[name])
        assert row["moving_speed_ratio"] == pytest.approx(1.0)
        assert row["moving_dir_acc"] == 1.0 and row["parked_dir_acc"] is None
    for name in PARKED:
        row = rows[name]
        assert (row["parked"], row["gt_parked"], row["moving"]) == (2, 2, 0), name
        assert row["parked_dir_acc"] == 1.0 and row["moving_vel_err"] is None
    vehicle = report["groups"]["vehicle"]
    assert (vehicle["moving"], vehicle["parked"], vehicle["matched"]) == (4, 6, 10)
    assert vehicle["moving_zero_vel_err"] == pytest.approx((SPEED["car"] + SPEED["trailer"]) / 2)
    assert vehicle["moving_dir_acc"] == vehicle["parked_dir_acc"] == 1.0
    everything = report["groups"]["all"]
    assert (everything["moving"], everything["parked"], everything["matched"]) == (8, 8, 16)
    assert (report["samples"], report["split_samples"], report["version"]) == (2, 2, VERSION)


def test_heading_turned_by_pi_is_always_the_wrong_way(tiny, tmp_path):
    _, nusc = tiny
    turn = Quaternion(axis=[0, 0, 1], radians=math.pi)

    def turned(box: dict) -> dict:
        return dict(box, rotation=list((turn * Quaternion(box["rotation"])).elements))

    report = diagnose_file(tmp_path, nusc, gt_submission(nusc, turned))
    for name in MOVING:
        assert report["classes"][name]["moving_dir_acc"] == 0.0, name
        assert report["classes"][name]["moving_vel_err"] == pytest.approx(0, abs=1e-9)
    for name in PARKED:
        assert report["classes"][name]["parked_dir_acc"] == 0.0, name
    assert report["groups"]["vehicle"]["moving_dir_acc"] == 0.0
    assert report["groups"]["vehicle"]["parked_dir_acc"] == 0.0


def test_zero_velocity_scores_exactly_the_zero_baseline(tiny, tmp_path):
    _, nusc = tiny
    report = diagnose_file(tmp_path, nusc, gt_submission(
        nusc, lambda box: dict(box, velocity=[0.0, 0.0], attribute_name=attribute_for(
            box["detection_name"], 0.0))))
    for row in [report["classes"][n] for n in MOVING] + list(report["groups"].values()):
        assert row["moving_vel_err"] == pytest.approx(row["moving_zero_vel_err"])
        assert row["moving_speed_ratio"] == 0.0 and row["moving_dir_acc"] == 1.0
    assert report["classes"]["car"]["moving_vel_err"] == pytest.approx(SPEED["car"])
    assert report["classes"]["bus"]["parked_vel_err"] == pytest.approx(0.1)
    assert report["classes"]["truck"]["parked_vel_err"] == 0.0


def test_far_prediction_is_unmatched_and_out_of_range_one_is_dropped(tiny, tmp_path):
    _, nusc = tiny
    submission = gt_submission(nusc)
    car = next(b for b in submission["results"]["sample-0"] if b["detection_name"] == "car")
    x, y, z = car["translation"]
    extra = [dict(car, translation=[x + 10, y, z], detection_score=0.9),  # 10 m off
             dict(car, translation=[x + 3, y, z], detection_score=0.8),   # 3 m > 2 m
             dict(car, translation=[x + 80, y, z], detection_score=0.7)]  # beyond 50 m
    submission["results"]["sample-0"].extend(extra)
    row = diagnose_file(tmp_path, nusc, submission)["classes"]["car"]
    assert (row["pred"], row["matched"], row["moving_vel_err"]) == (4, 2, pytest.approx(0))
    # The GT copy (score 1) takes the car first; the others have nothing left to match.
    assert diagnose_file(tmp_path, nusc, submission, dist_th=4.0)["classes"]["car"]["matched"] == 2


def test_matching_is_greedy_by_score_as_in_the_devkit(tiny, tmp_path):
    """A worse box with a higher score takes the GT car; the exact copy is unmatched."""
    _, nusc = tiny
    submission = gt_submission(nusc)
    boxes = submission["results"]["sample-0"]
    car = next(b for b in boxes if b["detection_name"] == "car")
    car["detection_score"] = 0.5
    x, y, z = car["translation"]
    boxes.append(dict(car, translation=[x + 1.5, y, z], velocity=[0.0, 0.0],
                      attribute_name="vehicle.parked", detection_score=0.9))
    row = diagnose_file(tmp_path, nusc, submission)["classes"]["car"]
    assert (row["pred"], row["matched"]) == (3, 2)
    assert row["moving_vel_err"] == pytest.approx(SPEED["car"] / 2)  # one of two at 0 m/s
    low = diagnose_file(tmp_path, nusc, submission, dist_th=1.0)["classes"]["car"]
    assert low["matched"] == 2 and low["moving_vel_err"] == pytest.approx(0, abs=1e-9)
    kept = diagnose_file(tmp_path, nusc, submission, min_score=0.8)["classes"]["car"]
    assert (kept["pred"], kept["matched"], kept["moving"]) == (2, 2, 2)


def test_missing_file_and_foreign_tokens_name_the_file(tiny, tmp_path):
    _, nusc = tiny
    missing = tmp_path / "nothing.json"
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        motion_diagnosis(nusc, missing, "mini_val")
    submission = gt_submission(nusc)
    submission["results"]["sample-of-another-db"] = []
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(submission))
    with pytest.raises(SubmissionError, match=r"foreign\.json: 1 of its 3 sample tokens are "
                                              r"not in the GT of mini_val.*sample-of-another-db"):
        motion_diagnosis(nusc, path, "mini_val")
    with pytest.raises(ToolError, match="foreign.json"):
        motion_report.main([str(path), "--data-root", str(tiny[0])])


def test_cli_prints_the_table_and_writes_the_json(tiny, tmp_path, capsys):
    root, nusc = tiny
    path = tmp_path / "results_nusc.json"
    path.write_text(json.dumps(gt_submission(nusc)))
    out = tmp_path / "report" / "motion.json"
    assert motion_report.main([str(path), "--data-root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 of the 2 samples of mini_val (v1.0-mini)" in printed
    assert printed.strip().endswith(f"wrote {out}")
    table = format_table(json.loads(out.read_text()))
    assert table in printed and "[vehicle]" in table and "4/4" in table
    written = json.loads(out.read_text())
    assert written["groups"]["vehicle"]["parked_dir_acc"] == 1.0
    assert written["classes"]["car"]["parked_dir_acc"] is None  # no NaN in the JSON


def test_command_line_errors_are_one_line(tiny, tmp_path):
    root, _ = tiny
    proc = run_tool("tools/analysis_tools/motion_report.py", tmp_path / "absent.json",
                    "--data-root", root)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: submission file not found: {tmp_path / 'absent.json'}"
    helped = run_tool("tools/analysis_tools/motion_report.py", "--help")
    assert helped.returncode == 0
    assert "python tools/analysis_tools/motion_report.py work_dirs/results_nusc.json" in helped.stdout
