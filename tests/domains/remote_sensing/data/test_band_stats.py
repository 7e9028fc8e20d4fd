from __future__ import annotations

import json

import numpy as np
import rasterio

from interlace.domains.remote_sensing.data import (S2_BANDS, RunningBandStats,
                                                   SentinelTimeSeriesDataset, make_synthetic_s1s2)
from interlace.tools import compute_band_stats


def test_running_stats_match_numpy_over_windows():
    rng = np.random.default_rng(0)
    values = rng.normal(5, 3, (2, 40, 40)).astype(np.float32)
    valid = rng.random((40, 40)) > 0.3
    stats = RunningBandStats(2)
    for r in range(0, 40, 16):                                  # uneven windows
        stats.update(values[:, r:r + 16], valid[r:r + 16])
    np.testing.assert_allclose(stats.mean, values[:, valid].mean(1), rtol=1e-6)
    np.testing.assert_allclose(stats.std, values[:, valid].std(1), rtol=1e-5)


def test_tool_numbers_match_numpy_and_dataset_reads_them(tmp_path, capsys):
    make_synthetic_s1s2(tmp_path, tiles=1, size=32, dates=2, seed=1)
    out = tmp_path / "band_stats.json"
    assert compute_band_stats.main([str(tmp_path), "--out", str(out), "--window", "16"]) == 0
    assert "wrote" in capsys.readouterr().out
    stats = json.loads(out.read_text())
    s2_values, s1_values = [], []
    for path in sorted((tmp_path / "s2").glob("*.tif")):
        with rasterio.open(path) as src:
            data = src.read().astype(np.float64)
            scl = data[src.descriptions.index("SCL")]
            ok = (data[:10] != 0).all(0) & ~np.isin(scl, [0, 3, 8, 9, 10])
            order = [src.descriptions.index(b) for b in S2_BANDS]
            s2_values.append(data[order][:, ok])
    for path in sorted((tmp_path / "s1").glob("*.tif")):
        with rasterio.open(path) as src:
            data = src.read().astype(np.float64)
            s1_values.append(data[:, (data != -9999).all(0)])
    s2 = np.concatenate(s2_values, 1)
    s1 = np.concatenate(s1_values, 1)
    np.testing.assert_allclose(stats["s2"]["mean"], s2.mean(1), rtol=1e-9)
    np.testing.assert_allclose(stats["s2"]["std"], s2.std(1), rtol=1e-6)
    np.testing.assert_allclose(stats["s1"]["mean"], s1.mean(1), rtol=1e-6)
    assert stats["s2"]["count"][0] == s2.shape[1] and stats["s2"]["bands"] == list(S2_BANDS)
    sample = SentinelTimeSeriesDataset(str(tmp_path), chip_size=32)[0]  # 'auto' finds it
    valid = sample["s2_valid"]
    assert abs(float(sample["s2"][:, 0][valid].mean())) < 0.5
