"""The driving check's motion step kinds (interlace.checks.driving_motion) on tiny
hand-made inputs: the two-sample database of test_nuscenes_metric (car 4.1 m/s and
trailer 2.8 m/s moving, truck / construction vehicle / bus parked), submissions made
from its GT, toy voxel-coverage configs, and a fake context as run_check builds it."""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from pyquaternion import Quaternion

from interlace.checks import driving_motion
from interlace.checks.driving import STEP_KINDS
from interlace.core.engine.cli import load_config
from interlace.domains.driving.data.nuscenes_names import CLASSES
from tests.domains.driving.test_motion_diagnosis import SPEED, gt_submission
from tests.domains.driving.test_nuscenes_metric import VERSION, write_tiny_nuscenes
from tests.domains.driving.test_voxel_coverage import _config as coverage_config

ROOT = Path(__file__).resolve().parents[2]
FUSION = "configs/driving/deepinteraction/deepinteraction_r18-tiny_b2-1350it_nus-synthetic-check.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny database, with an info file whose samples carry their GT instances (as
    create_nuscenes_infos writes them) for the GT-as-predictions step."""
    import contextlib
    import io

    from nuscenes import NuScenes
    root = tmp_path_factory.mktemp("tiny_motion_steps")
    database = write_tiny_nuscenes(root)
    data_list = []
    for index, (info, (rows, labels)) in enumerate(zip(database["infos"], database["gt"])):
        instances = [dict(bbox_3d=[float(v) for v in row[:7]],
                          velocity=[float(v) for v in row[7:9]],
                          bbox_label_3d=int(label), bbox_3d_isvalid=True)
                     for row, label in zip(rows, labels)]
        data_list.append(dict(info, sample_idx=index, timestamp=0.0, images={},
                              lidar_points=dict(info["lidar_points"], lidar_path="none.bin"),
                              instances=instances))
    metainfo = dict(version=VERSION, categories={name: i for i, name in enumerate(CLASSES)})
    with open(root / "nuscenes_infos_val.pkl", "wb") as stream:
        pickle.dump(dict(metainfo=metainfo, data_list=data_list), stream)
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=VERSION, dataroot=str(root), verbose=False)
    return root, nusc


def context_for(root: Path, out: Path, steps: dict | None = None) -> dict:
    """What run_check hands a step: the check's data, its out folder, earlier outcomes."""
    return dict(out=str(out), data=dict(root=str(root), version=VERSION), cfg_options={},
                steps=steps or {}, resume=False)


def write_test_run(out: Path, name: str, submission: dict) -> Path:
    """A test step's work dir as NuScenesMetric leaves it: <out>/<name>/results_nusc.json."""
    (out / name).mkdir(parents=True, exist_ok=True)
    path = out / name / "results_nusc.json"
    path.write_text(json.dumps(submission))
    return path


def shipped_metrics(kind: str) -> set[str]:
    """The metrics that the shipped driving check's thresholds and model-zoo entries read
    from its steps of `kind`: a step that stopped giving one would fail the check only
    after its 40 minutes of training."""
    import ast

    from interlace.checks.framework import load_check
    check = load_check(str(ROOT / "configs" / "checks" / "driving.py"))
    steps = {step["name"] for step in check.steps if step["kind"] == kind}
    expressions = [t["value"] for t in check.thresholds]
    expressions += [e for entry in check.model_zoo for e in entry["metrics"].values()]
    wanted = set()
    for expression in expressions:
        for node in ast.walk(ast.parse(expression, mode="eval")):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in steps:
                wanted.add(node.attr)
    assert wanted, kind
    return wanted


def test_driving_check_has_the_motion_step_kinds():
    assert {"motion", "lag_reversal", "voxel_coverage", "gt_as_predictions"} <= set(STEP_KINDS)


def test_motion_step_flattens_the_diagnosis_of_a_test_steps_submission(tiny, tmp_path):
    root, nusc = tiny
    turn = Quaternion(axis=[0, 0, 1], radians=math.pi)
    trailer_turned = gt_submission(nusc, lambda box: dict(box, rotation=list(
        (turn * Quaternion(box["rotation"])).elements))
        if box["detection_name"] == "trailer" else box)
    write_test_run(tmp_path, "fusion_test", trailer_turned)
    context = context_for(root, tmp_path,
                          {"fusion_test": dict(work_dir=str(tmp_path / "fusion_test"))})
    outcome = driving_motion.motion_step("fusion_motion", context, test="fusion_test")
    metrics = outcome["metrics"]
    # vehicles: car (2, right way) and trailer (2, turned) moving; 6 parked, right way
    assert metrics["vehicle_moving_dir_acc"] == 0.5
    assert metrics["vehicle_parked_dir_acc"] == 1.0
    assert metrics["vehicle_moving_vel_err"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["vehicle_moving_zero_vel_err"] == pytest.approx(
        (SPEED["car"] + SPEED["trailer"]) / 2)
    assert metrics["vehicle_moving_speed_ratio"] == pytest.approx(1.0)
    assert (metrics["vehicle_moving"], metrics["vehicle_parked"]) == (4, 6)
    assert metrics["trailer_moving_dir_acc"] == 0.0 and metrics["car_moving_dir_acc"] == 1.0
    assert "car_parked_dir_acc" not in metrics  # no parked car: left out, not None
    assert metrics["all_moving"] == 8
    assert shipped_metrics("motion") <= set(metrics)
    report = json.loads(Path(outcome["report_file"]).read_text())
    assert report["groups"]["vehicle"]["moving_dir_acc"] == 0.5
    # a test step that did not run in this check run is read from its default work dir
    again = driving_motion.motion_step("m", context_for(root, tmp_path), test="fusion_test")
    assert again["metrics"] == metrics
    with pytest.raises(FileNotFoundError, match="test step 'lidar_only_test'"):
        driving_motion.motion_step("m", context, test="lidar_only_test")


def test_lag_reversal_step_inserts_the_transform_and_compares_velocities(
        tiny, tmp_path, monkeypatch):
    """The Runner is replaced by a fake test step that writes a submission whose
    velocities are turned around, as a model reading the lag would give."""
    root, nusc = tiny
    write_test_run(tmp_path, "fusion_test", gt_submission(nusc))
    calls = []

    def fake_test_step(name, context, config, checkpoint, cfg_options=None, drop=None,
                       work_dir=None):
        calls.append(dict(name=name, config=config, checkpoint=checkpoint,
                          cfg_options=cfg_options, work_dir=work_dir))
        turned = gt_submission(nusc, lambda box: dict(
            box, velocity=[-box["velocity"][0], -box["velocity"][1]]))
        write_test_run(Path(work_dir).parent, Path(work_dir).name, turned)
        return dict(checkpoint="fusion.pth", work_dir=work_dir,
                    metrics=dict(mAP=0.9, NDS=0.5, mAVE=2.0, mAOE=0.1))

    monkeypatch.setattr(driving_motion, "test_step", fake_test_step)
    context = context_for(root, tmp_path)
    outcome = driving_motion.lag_reversal_step(
        "fusion_lag_reversal", context, config=str(ROOT / FUSION), checkpoint="fusion",
        reference="fusion_test")
    metrics = outcome["metrics"]
    assert metrics["pairs"] == 4  # car and trailer, two samples each
    assert metrics["velocity_change"] == pytest.approx(2.0)
    assert metrics["turned_share"] == 1.0
    assert metrics["reversed_mAVE"] == 2.0 and metrics["reversed_mAP"] == 0.9
    assert shipped_metrics("lag_reversal") <= set(metrics)
    (call,) = calls
    assert call["work_dir"] == str(tmp_path / "fusion_lag_reversal")
    key, = call["cfg_options"]
    assert key == "test_dataloader.dataset.pipeline"
    types = [step["type"] for step in call["cfg_options"][key]]
    assert types[types.index("LoadPointsFromMultiSweeps") + 1] == "ReverseTimeLag"
    # the override is what --cfg-options would apply: the config's own test pipeline,
    # with the reversal, in place of the old one
    cfg = load_config(str(ROOT / FUSION), call["cfg_options"])
    assert [s["type"] for s in cfg.test_dataloader.dataset.pipeline] == types
    # without a reference the step runs the normal test too, in <out>/<name>/normal
    calls.clear()
    driving_motion.lag_reversal_step("again", context, config=str(ROOT / FUSION),
                                     checkpoint="fusion")
    assert [c["work_dir"] for c in calls] == [str(tmp_path / "again" / "normal"),
                                              str(tmp_path / "again")]
    assert calls[0]["cfg_options"] is None


def test_voxel_coverage_step_reports_the_worst_config_and_split(tmp_path):
    configs = {}
    for label, cfg in (("capped", coverage_config(10, test_shuffle=False)),
                       ("dynamic", coverage_config(-1, False, "DynamicMeanVoxelEncoder"))):
        configs[label] = str(tmp_path / f"{label}.py")
        Path(configs[label]).write_text(cfg.pretty_text)
    context = context_for(tmp_path, tmp_path)
    metrics = driving_motion.voxel_coverage_step("cov", context, configs=dict(
        dynamic=configs["dynamic"]), samples=2)["metrics"]
    assert metrics["min_kept_share"] == 1.0 and metrics["max_abs_sweep_shift"] == 0.0
    assert metrics["dynamic_test_kept_share"] == 1.0
    outcome = driving_motion.voxel_coverage_step("cov", context, configs=configs, samples=2)
    metrics = outcome["metrics"]
    # capped at 10 points per 40-point voxel, key frame first at test time: 25 % kept,
    # all of it key frame, so the sweep share falls from 0.75 to 0
    assert metrics["min_kept_share"] == 0.25
    assert metrics["capped_test_sweep_shift"] == pytest.approx(-0.75)
    assert metrics["max_abs_sweep_shift"] == pytest.approx(0.75)
    assert list(metrics)[:2] == ["min_kept_share", "max_abs_sweep_shift"]
    assert outcome["coverage"]["capped"]["test"]["kept"] == 400
    assert shipped_metrics("voxel_coverage") <= set(metrics)


def test_gt_as_predictions_step_scores_the_exported_gt(tiny, tmp_path):
    root, _ = tiny
    outcome = driving_motion.gt_as_predictions_step("gt", context_for(root, tmp_path))
    metrics = outcome["metrics"]
    assert metrics["mAP"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["mAOE_present"] < 0.01 and metrics["mAVE_present"] < 0.01
    assert metrics["mAOE"] < 0.01 and metrics["classes_present"] == 10
    assert Path(outcome["submission"]) == tmp_path / "gt" / "results_nusc.json"
    assert (tmp_path / "gt" / "metrics_summary.json").is_file()
    assert np.isfinite(list(metrics.values())).all()
    assert shipped_metrics("gt_as_predictions") <= set(metrics)
