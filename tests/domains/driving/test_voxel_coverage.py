"""The voxel-coverage measurement (tools/analysis_tools/voxel_coverage.py): counts of a
hand-built cloud under capped and dynamic voxelisation, with and without the seeded test
shuffle, through a config as the tool reads it."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose

from interlace.core.engine.registry import DATASETS
from interlace.domains.driving.evaluation.voxel_coverage import (format_coverage,
                                                                 measure_coverage,
                                                                 sample_coverage)
from interlace.domains.driving.models.data_preprocessor import DrivingDataPreprocessor
from interlace.tools import voxel_coverage as tool

RANGE = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
VOXEL = [0.4, 0.4, 0.2]


def crowded_cloud(voxels: int = 20, per_voxel: int = 40, seed: int = 0) -> np.ndarray:
    """(voxels * per_voxel + 5, 5): each 0.4 m voxel holds per_voxel points, a quarter of
    them key frame (lag 0) and listed first, as the loaders give them; 5 points lie
    outside the range."""
    rng = np.random.default_rng(seed)
    centres = (rng.choice(120, voxels, replace=False)[:, None] * 0.4 + 0.2).repeat(per_voxel, 0)
    xyz = np.column_stack([centres + rng.uniform(-0.19, 0.19, centres.shape),
                           centres * 0.0 + 0.2, np.full(len(centres), 0.1)])
    lag = np.tile(np.repeat([0.0, 0.05, 0.1, 0.15], per_voxel // 4), voxels)
    order = np.argsort(lag, kind="stable")
    cloud = np.column_stack([xyz, np.ones(len(xyz)), lag])[order]
    outside = np.tile([[80.0, 0.0, 0.0, 1.0, 0.1]], (5, 1))
    return np.concatenate([cloud, outside]).astype(np.float32)


@DATASETS.register_module(name="CoverageToyDataset", force=True)
class CoverageToyDataset:
    """Two hand-built clouds through a real pipeline (no files)."""

    def __init__(self, pipeline: list[dict[str, Any]]) -> None:
        self.pipeline = Compose(pipeline)

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.pipeline(dict(points=crowded_cloud(seed=index), token=f"tok{index}"))


def _layer(max_num_points: int) -> dict:
    return dict(max_num_points=max_num_points, point_cloud_range=RANGE, voxel_size=VOXEL,
                max_voxels=(40000, 40000))


def test_sample_coverage_counts_capped_and_dynamic_voxels():
    points = torch.from_numpy(crowded_cloud())
    capped = DrivingDataPreprocessor(use_images=False, voxel_layer=_layer(10))
    counts, _ = sample_coverage(points, capped, training=False)
    # 20 voxels x 40 in range, 10 kept each, all of them key frame (listed first).
    assert counts == dict(in_range=800, kept=200, sweep_in_range=600, sweep_kept=0)
    dynamic = DrivingDataPreprocessor(use_images=False, voxel_layer=_layer(-1))
    counts, voxels = sample_coverage(points, dynamic, training=False)
    assert counts == dict(in_range=800, kept=800, sweep_in_range=600, sweep_kept=600)
    assert voxels["voxels"].shape == (800, 5)


def _config(max_num_points: int, test_shuffle: bool, encoder: str = "MeanVoxelEncoder"
            ) -> Config:
    pack = dict(type="Pack3DDetInputs", keys=("points",))
    test = ([dict(type="PointShuffle", seed=0)] if test_shuffle else []) + [pack]
    return Config(dict(
        default_scope="interlace",
        model=dict(data_preprocessor=dict(type="DrivingDataPreprocessor", use_images=False,
                                          voxel_layer=_layer(max_num_points)),
                   lidar_encoder=dict(voxel_encoder=dict(type=encoder))),
        train_dataloader=dict(dataset=dict(type="CoverageToyDataset",
                                           pipeline=[dict(type="PointShuffle"), pack])),
        test_dataloader=dict(dataset=dict(type="CoverageToyDataset", pipeline=test))))


def test_measure_coverage_shows_the_test_time_sweep_loss_and_its_fixes():
    capped = measure_coverage(_config(10, test_shuffle=False), num_samples=2)
    assert capped["train"]["kept_share"] == capped["test"]["kept_share"] == 0.25
    assert capped["test"]["sweep_share_before"] == 0.75
    assert capped["test"]["sweep_share_after"] == 0.0            # key frame kept first
    assert abs(capped["train"]["sweep_shift"]) < 0.05            # shuffled in training
    assert not capped["test"]["meets_target"]
    shuffled = measure_coverage(_config(10, test_shuffle=True), num_samples=2)
    assert abs(shuffled["test"]["sweep_shift"]) < 0.05
    dynamic = measure_coverage(_config(-1, False, "DynamicMeanVoxelEncoder"), num_samples=2)
    for split in ("train", "test"):
        assert dynamic[split]["kept_share"] == 1.0 and dynamic[split]["sweep_shift"] == 0.0
        assert dynamic[split]["meets_target"] and len(dynamic[split]["feature_std"]) == 5
    table = "\n".join(format_coverage(dynamic))
    assert "100.0 %" in table and "NOT met" not in table


def test_tool_prints_the_table_writes_json_and_fails_strictly(tmp_path, capsys):
    config = tmp_path / "toy_coverage.py"
    config.write_text(_config(10, test_shuffle=False).pretty_text)
    out = tmp_path / "coverage.json"
    code = tool.main([str(config), "--samples", "2", "--splits", "test", "--out", str(out),
                      "--strict"])
    printed = capsys.readouterr().out
    assert code == 1 and "NOT met" in printed and "25.0 %" in printed
    assert json.loads(out.read_text())["results"]["test"]["kept"] == 400
    dynamic = ["model.data_preprocessor.voxel_layer.max_num_points=-1",
               "model.lidar_encoder.voxel_encoder.type=DynamicMeanVoxelEncoder"]
    assert tool.main([str(config), "--samples", "2", "--splits", "test", "--strict",
                      "--cfg-options", *dynamic]) == 0


def test_tool_rejects_a_config_without_a_data_preprocessor(tmp_path):
    from interlace.core.engine.cli import ToolError

    config = tmp_path / "bare.py"
    config.write_text("model = dict(type='X')\n")
    with pytest.raises(ToolError, match="data_preprocessor"):
        tool.main([str(config)])
    with pytest.raises(SystemExit):
        tool.parse_args([str(config), "--samples", "0"])
