"""tools/driving_fusion_check.py: issue 5's must-show 2 (LiDAR+camera vs LiDAR-only).

The full check (``python tools/driving_fusion_check.py``, ~40 min on a CPU) is a make target
(``make check-driving``); here the fast tests cover the helpers and the slow one runs the
whole pipeline at a tiny size (a few iterations: the scores are not meaningful there)."""
import json

import pytest

from tests.fixtures.tools import load_tool, run_tool


def _metrics(map_: float, **aps: float) -> dict:
    classes = load_tool("driving_fusion_check").CLASSES
    metrics = {"mAP": map_, "NDS": map_}
    metrics.update({f"AP_{c}": aps.get(c, map_) for c in classes})
    return metrics


def test_help_shows_an_example():
    proc = run_tool("tools/driving_fusion_check.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--lidar-min" in proc.stdout and "--fusion-min" in proc.stdout
    assert "python tools/driving_fusion_check.py --scenes" in proc.stdout


def test_time_driven_lr_warms_up_then_decays_to_one_percent():
    tool = load_tool("driving_fusion_check")
    assert tool.time_lr_factor(0.0, 0.1) == pytest.approx(0.1)
    assert tool.time_lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert tool.time_lr_factor(0.55, 0.1) == pytest.approx(0.505)
    assert tool.time_lr_factor(1.0, 0.1) == pytest.approx(0.01)
    assert tool.time_lr_factor(2.0, 0.1) == pytest.approx(0.01)


def test_retarget_points_every_data_root_and_version_at_the_set():
    tool = load_tool("driving_fusion_check")
    cfg = dict(dataset=dict(type="CBGSDataset", dataset=dict(data_root="a", version="v1.0-mini")),
               pipeline=[dict(db_sampler=dict(data_root="a"))], other=dict(version=3))
    tool._retarget(cfg, "/x", "v1.0-trainval")
    assert cfg["dataset"]["dataset"] == dict(data_root="/x", version="v1.0-trainval")
    assert cfg["pipeline"][0]["db_sampler"]["data_root"] == "/x"
    assert cfg["other"]["version"] == 3


def test_checks_hold_only_past_the_thresholds():
    tool = load_tool("driving_fusion_check")
    lidar = _metrics(0.45, bicycle=0.2, motorcycle=0.2)
    good = dict(eval=dict(lidar_only=lidar, fusion=_metrics(0.55, bicycle=0.6, motorcycle=0.6),
                          fusion_drop_camera=_metrics(0.42)))
    assert all(tool.checks(good).values())
    bad = dict(eval=dict(lidar_only=lidar, fusion=_metrics(0.48, bicycle=0.2, motorcycle=0.2),
                         fusion_drop_camera=_metrics(0.0)))
    verdict = tool.checks(bad)
    assert not any(verdict.values())
    table = tool.format_table(dict(good, checks=tool.checks(good), train={},
                                   data=dict(train=10, val=2, version="v1.0-trainval")))
    assert "bicyc" in table and "[PASS] fusion mAP >= 0.5" in table


@pytest.mark.slow
def test_tiny_run_prints_the_table_and_writes_json(tmp_path):
    proc = run_tool("tools/driving_fusion_check.py", "--scenes", "3", "--samples-per-scene", "2",
                    "--version", "v1.0-mini", "--lidar-min", "0.2", "--fusion-min", "0.2",
                    "--max-iters", "2", "--out", tmp_path, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "LiDAR+camera, --drop camera" in proc.stdout and "bicyc" in proc.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result["eval"]) == {"lidar_only", "fusion", "fusion_drop_camera"}
    for scores in result["eval"].values():
        assert 0.0 <= scores["mAP"] <= 1.0 and "AP_bicycle" in scores and "AP_motorcycle" in scores
    assert result["train"]["lidar"]["iters"] == result["train"]["fusion"]["iters"] == 2
    assert (tmp_path / "fusion_init.pth").is_file() and len(result["checks"]) == 5
