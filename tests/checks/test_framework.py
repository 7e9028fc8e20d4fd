"""The check framework: threshold expressions, verdicts, reports, config errors; and the
three check configs load with their steps and thresholds consistent."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from interlace.checks.framework import (CheckError, evaluate_expression, format_markdown,
                                        load_check, score_thresholds)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = {"fusion_test": {"mAP": 0.8, "AP_car": 0.9}, "lidar_test": {"mAP": 0.7},
           "seg": {"IoU.crop_early": 0.5}}


def test_expressions_combine_step_metrics_and_numbers():
    assert evaluate_expression("fusion_test.mAP - lidar_test.mAP", RESULTS) == pytest.approx(0.1)
    assert evaluate_expression("(fusion_test.mAP + lidar_test.mAP) / 2", RESULTS) == \
        pytest.approx(0.75)
    assert evaluate_expression("-seg.IoU.crop_early * 2", RESULTS) == pytest.approx(-1.0)


@pytest.mark.parametrize("expression, message", [
    ("nope.mAP", "no step 'nope'"),
    ("fusion_test.NDS", "has no metric 'NDS'"),
    ("__import__('os').getcwd()", "only step.metric names"),
    ("fusion_test.mAP ** 2", "only step.metric names"),
    ("fusion_test.mAP -", "threshold"),
])
def test_bad_expressions_are_refused_with_the_reason(expression, message):
    with pytest.raises(CheckError, match=message):
        evaluate_expression(expression, RESULTS)


def test_thresholds_hold_fail_and_report_missing_metrics():
    rows = score_thresholds([
        dict(name="a", value="fusion_test.mAP", min=0.8),
        dict(name="b", value="fusion_test.mAP - lidar_test.mAP", min=0.15),
        dict(name="c", value="lidar_test.mAP", min=-1, max=0.5),
        dict(name="d", value="lidar_test.NDS", min=0.0),
    ], RESULTS)
    assert [row["holds"] for row in rows] == [True, False, False, False]
    assert math.isnan(rows[3]["value"]) and "has no metric 'NDS'" in rows[3]["error"]
    report = dict(check="c.py", date="2026-12-07", machine="cpu", seconds=60.0,
                  steps={"s": dict(kind="train", config="x.py", iters=3, seconds=6.0,
                                   metrics={"iters": 3}, command="python tools/train.py x.py")},
                  thresholds=rows)
    text = format_markdown(report)
    assert "| a | 0.8 | >= 0.8 | PASS |" in text
    assert "| c | 0.7 | >= -1 and <= 0.5 | FAIL |" in text
    assert "python tools/train.py x.py" in text


def test_check_config_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("domain = 'space'\ndata = dict()\nsteps = []\n")
    with pytest.raises(CheckError, match="unknown domain 'space'"):
        load_check(str(bad))
    twice = tmp_path / "twice.py"
    twice.write_text("domain = 'medical'\ndata = dict()\n"
                     "steps = [dict(name='a', kind='train'), dict(name='a', kind='test')]\n")
    with pytest.raises(CheckError, match="unique"):
        load_check(str(twice))
    with pytest.raises(FileNotFoundError):
        load_check(str(tmp_path / "missing.py"))


@pytest.mark.parametrize("domain", ["driving", "medical", "remote_sensing"])
def test_shipped_check_configs_name_existing_configs_and_their_own_steps(domain):
    check = load_check(str(ROOT / "configs" / "checks" / f"{domain}.py"), smoke=True)
    names = {step["name"] for step in check.steps}
    for step in check.steps:
        for config in [step.get("config"), *dict(step.get("configs") or {}).values()]:
            if config:
                assert (ROOT / config).is_file(), config
        for key in ("checkpoint", "test", "reference"):  # steps that name earlier steps
            if step.get(key):
                assert step[key] in names, (step["name"], key, step[key])
    for threshold in check.thresholds:
        tree = threshold["value"]
        used = {part.split(".")[0] for part in tree.replace("(", " ").replace(")", " ").split()
                if "." in part and not part[0].isdigit()}
        assert used <= names, (threshold["name"], used - names)
    assert check.step_cfg_options.get("budget_iters") == 2


def test_resume_takes_a_run_that_spent_its_iteration_budget_as_it_is(tmp_path):
    """`tools/check.py --resume`: a finished step is reused, not trained again; a run
    budgeted by iterations that stopped early is not counted as finished."""
    import torch
    from mmengine.config import Config

    from interlace.checks.steps import finished_run, train_step
    cfg = Config.fromfile(str(ROOT / "tests" / "fixtures" / "toy_config.py"))
    cfg.work_dir = str(tmp_path)
    cfg.custom_hooks = [dict(type="TimeBudgetHook", max_iters=4)]
    assert finished_run(cfg) is None  # nothing there yet
    for iters in (2, 4):
        torch.save(dict(meta=dict(iter=iters), state_dict={}), tmp_path / f"iter_{iters}.pth")
        (tmp_path / "last_checkpoint").write_text(str(tmp_path / f"iter_{iters}.pth"))
        expected = (str(tmp_path / "iter_4.pth"), 4) if iters == 4 else None
        assert finished_run(cfg) == expected
    config = tmp_path / "budgeted.py"
    cfg.dump(str(config))
    context = dict(cfg_options={}, steps={}, resume=True, out=str(tmp_path))
    outcome = train_step("toy", context, str(config), work_dir=str(tmp_path))
    assert outcome["reused"] and outcome["iters"] == 4
    assert outcome["checkpoint"] == str(tmp_path / "iter_4.pth")
