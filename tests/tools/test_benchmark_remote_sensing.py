"""`benchmark.py remote_sensing`: training steps and streamed scene inference."""
import json

import numpy as np
import pytest
import rasterio

from tests.fixtures.tools import run_tool

BENCHMARK = "tools/analysis_tools/benchmark.py"

CASES = {"pretrain_step", "segment_train_step", "scene_inference_small", "scene_inference_large"}


def _module():
    from interlace.benchmarks import remote_sensing
    return remote_sensing


def test_scene_sizes_default_to_the_issue_and_follow_the_environment(monkeypatch):
    bench = _module()
    monkeypatch.delenv("INTERLACE_RS_SCENE_SIZES", raising=False)
    monkeypatch.delenv("INTERLACE_RS_SCENE_DATES", raising=False)
    assert bench.scene_settings("full") == ((2000, 6000), 12)
    monkeypatch.setenv("INTERLACE_RS_SCENE_SIZES", "1000,3000")
    monkeypatch.setenv("INTERLACE_RS_SCENE_DATES", "2")
    assert bench.scene_settings("full") == ((1000, 3000), 2)
    assert {case.name for case in bench.CASES} == CASES


@pytest.mark.slow  # imports the remote-sensing data package: ~5 s on a loaded CPU
def test_generated_scene_is_a_readable_tile_with_every_date(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERLACE_BENCH_CACHE", str(tmp_path))
    bench = _module()
    root = bench.make_scene(64, 4)
    assert bench.make_scene(64, 4) == root  # cached, not written twice
    s2 = sorted((root / "s2").iterdir())
    assert len(s2) == 4 and s2[2].is_symlink()
    with rasterio.open(root / "labels" / "LABEL_BENCH.tif") as label, rasterio.open(s2[3]) as date:
        assert label.shape == (64, 64) and date.count == 11
        assert date.descriptions[-1] == "SCL"
        classes = np.unique(label.read(1))
    assert set(classes.tolist()) <= set(range(6)) and len(classes) > 1


@pytest.mark.slow
def test_smoke_run_times_every_case_and_writes_the_json(tmp_path):
    out = tmp_path / "remote_sensing.json"
    proc = run_tool(BENCHMARK, "remote_sensing", "--scale", "smoke", "--repeats", "1",
                    "--threads", "1", "--no-reference", "--out", out, timeout=600,
                    INTERLACE_BENCH_CACHE=str(tmp_path))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = {row["case"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == CASES
    for row in rows.values():
        assert row["ours"]["median_s"] > 0 and row["ours"]["peak_mib"] >= 0, row
    assert "km²/min = 0.4096 /" in rows["scene_inference_small"]["ours"]["notes"]
    assert "chips/s = 2 / time" in rows["pretrain_step"]["ours"]["notes"]
