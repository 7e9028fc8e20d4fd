"""tools/remote_sensing_check.py: the SkySense must-shows (labels, clouds, time)."""
import json

import pytest
import torch

from tests.fixtures.tools import load_tool, run_tool


def _batch(valid_s2: torch.Tensor) -> dict:
    b, t, h, w = valid_s2.shape
    doy = torch.arange(1, t + 1).expand(b, t) * 30
    inputs = dict(s2=torch.ones(b, t, 10, h, w), s2_doy=doy.clone(), s2_valid=valid_s2.clone(),
                  s1=torch.ones(b, t, 2, h, w), s1_doy=doy + 2,
                  s1_valid=torch.ones(b, t, h, w, dtype=torch.bool))
    return dict(inputs=inputs, data_samples=[])


def test_help_shows_an_example():
    proc = run_tool("tools/remote_sensing_check.py", "--help")
    assert proc.returncode == 0
    assert "--pretrain-min" in proc.stdout and "--label-fraction" in proc.stdout
    assert "python tools/remote_sensing_check.py --tiles" in proc.stdout


def test_cloudy_view_makes_at_least_the_fraction_of_dates_cloudy_and_is_fixed_per_chip():
    tool = load_tool("remote_sensing_check")
    valid = torch.ones(3, 12, 8, 8, dtype=torch.bool)
    valid[0, 1] = False  # one date already cloudy in chip 0
    valid[1, :8] = False  # chip 1 is already cloudier than asked
    view = tool.make_cloudy_view(0.5, seed=0)
    first = view(_batch(valid), [10, 11, 12], False)["inputs"]
    cloudy = tool.cloudy_share(first["s2_valid"])
    assert cloudy.sum(1).tolist() == [6, 8, 6]
    assert bool(cloudy[0, 1])  # the generator's own cloudy date is kept
    masked = valid[:, :, None].expand_as(first["s2"]) & ~first["s2_valid"][:, :, None].expand_as(
        first["s2"])  # the dates the view made overcast have no optical value left
    assert masked.any() and float(first["s2"][masked].abs().sum()) == 0
    again = view(_batch(valid), [10, 11, 12], False)["inputs"]
    assert torch.equal(again["s2_valid"], first["s2_valid"])
    other = view(_batch(valid), [20, 11, 12], False)["inputs"]
    assert not torch.equal(other["s2_valid"][0], first["s2_valid"][0])


def test_single_date_view_keeps_one_clear_date_of_both_streams():
    tool = load_tool("remote_sensing_check")
    valid = torch.zeros(2, 12, 8, 8, dtype=torch.bool)
    valid[0, 4] = True  # chip 0: only date 4 is clear
    valid[1, 7] = True
    inputs = tool.make_single_date_view(seed=0)(_batch(valid), [0, 1], False)["inputs"]
    assert inputs["s2"].shape[1] == inputs["s1"].shape[1] == 1
    assert inputs["s2_doy"][:, 0].tolist() == [150, 240]
    assert inputs["s1_doy"][:, 0].tolist() == [152, 242]
    assert bool(inputs["s2_valid"].all())


def test_checks_hold_only_past_the_thresholds():
    tool = load_tool("remote_sensing_check")
    iou = dict(crop_early=50.0, crop_late=40.0)
    experiments = dict(
        labels=dict(rows=[dict(miou=60.0), dict(miou=56.0)], pretrain_plus_finetune_seconds=600),
        clouds=dict(rows=[dict(miou=70.0), dict(miou=60.0)]),
        time=dict(rows=[dict(iou=iou), dict(iou=dict(crop_early=30.0, crop_late=45.0))]))
    found = tool.checks(experiments)
    assert found["pretrained_minus_random_miou"]["holds"] is False  # +4 < 5 points
    assert found["sar_optical_minus_optical_miou"]["holds"] is True
    assert found["temporal_minus_single_date_iou"]["holds"] is False  # crop_late is worse
    assert found["temporal_minus_single_date_iou"]["value"]["crop_early"] == pytest.approx(20.0)


@pytest.mark.slow
def test_tiny_run_prints_the_table_and_writes_json(tmp_path):
    proc = run_tool("tools/remote_sensing_check.py", "--tiles", "3", "--test-tiles", "1",
                    "--size", "64", "--pretrain-min", "0.1", "--finetune-steps", "3",
                    "--batch-size", "2", "--out", tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "mIoU / OA / per-class IoU" in proc.stdout and "crop_early" in proc.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result["experiments"]) == {"labels", "labels_frozen", "clouds", "time"}
    assert len(result["experiments"]["labels"]["gain_per_seed"]) == 5  # --label-seeds
    assert result["experiments"]["labels"]["labelled_chips"] == 1  # 5 % of 8 chips, at least 1
    assert result["experiments"]["clouds"]["min_cloudy_date_share_used"] >= 0.5
    assert set(result["checks"]) == {"pretrained_minus_random_miou",
                                     "pretrained_minus_random_miou_frozen_encoder",
                                     "sar_optical_minus_optical_miou",
                                     "temporal_minus_single_date_iou"}
    assert (tmp_path / "pretrained.pth").stat().st_size > 10000
