"""tools/misc/make_synthetic.py remote_sensing and
tools/dataset_converters/compute_band_stats.py, as a user runs them."""
from __future__ import annotations

import json

import pytest
import rasterio

from interlace.tools import compute_band_stats, make_synthetic
from tests.fixtures.tools import run_tool


def test_make_synthetic_remote_sensing_writes_geotiffs(tmp_path, capsys):
    tool = make_synthetic
    assert tool.main(["remote_sensing", "--out", str(tmp_path), "--tiles", "3", "--size", "32",
                      "--dates", "2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "3 tiles" in printed and "EPSG:32631" in printed
    truth = json.loads((tmp_path / "synthetic_truth.json").read_text())
    assert {t["crs"] for t in truth["tiles"].values()} == {"EPSG:32632", "EPSG:32631"}
    s2 = sorted((tmp_path / "s2").glob("*.tif"))
    assert len(s2) == 3 * 2
    with rasterio.open(s2[0]) as src:
        assert src.descriptions[-1] == "SCL" and src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.tags()["ACQUISITION_DATE"] == truth["s2_dates"][0]
        assert src.res == (10.0, 10.0)
    with rasterio.open(next((tmp_path / "s1").glob("S1_32TPR_*.tif"))) as src:
        assert src.res == (20.0, 20.0) and src.descriptions == ("VV", "VH") and src.nodata == -9999
    with rasterio.open(next((tmp_path / "labels").glob("*.tif"))) as src:
        assert src.colormap(1)[0][:3] == (30, 90, 200)


def test_make_synthetic_refuses_bad_size(tmp_path):
    with pytest.raises(SystemExit, match="--size"):
        make_synthetic.main(["remote_sensing", "--out", str(tmp_path), "--size", "7"])


def test_compute_band_stats_help_and_missing_root(tmp_path, capsys):
    tool = compute_band_stats
    with pytest.raises(SystemExit):
        tool.main(["--help"])
    assert "examples:" in capsys.readouterr().out
    assert tool.main([str(tmp_path / "nope")]) == 2
    assert "data root not found" in capsys.readouterr().err


@pytest.mark.slow
def test_tools_run_as_subprocesses(tmp_path):
    made = run_tool("tools/misc/make_synthetic.py", "remote_sensing", "--out", tmp_path,
                    "--size", "32", "--dates", "2", "--tiles", "1")
    assert made.returncode == 0, made.stderr
    stats = run_tool("tools/dataset_converters/compute_band_stats.py", tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert (tmp_path / "band_stats.json").is_file() and "s2: B02=" in stats.stdout
