from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import transform as warp_points

from interlace.domains.remote_sensing.data import (ChipQuery, S2_BANDS, SentinelTimeSeriesDataset,
                                                   make_synthetic_s1s2)

from .conftest import DATES, SIZE


def _marker_pixel(dataset, tile, marker):
    grid = dataset.grids[tile]
    xs, ys = warp_points("EPSG:4326", grid.crs, [marker["lon"]], [marker["lat"]])
    col, row = ~grid.transform @ (xs[0], ys[0])
    return int(row), int(col)


def test_sample_keeps_crs_transform_dates_and_band_order(s1s2_root, truth):
    dataset = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32)
    tile = "32TNR"
    sample = dataset[ChipQuery(tile, (0, 0, 32, 32))]
    with rasterio.open(s1s2_root / "labels" / f"LABEL_{tile}.tif") as src:
        assert sample["crs"] == "EPSG:32632" == src.crs.to_string()
        assert sample["transform"] == tuple(src.transform)[:6]
        np.testing.assert_array_equal(sample["label"].numpy(), src.read(1, window=((0, 32), (0, 32))))
    assert sample["s2"].shape == (DATES, 10, 32, 32) and sample["s2"].dtype == torch.float32
    assert sample["s1"].shape == (DATES, 2, 32, 32)
    assert sample["s2_dates"] == truth["s2_dates"] and sample["s1_dates"] == truth["s1_dates"]
    assert sample["s2_doy"].tolist() == [date.fromisoformat(d).timetuple().tm_yday
                                         for d in truth["s2_dates"]]
    # Band order and scaling: the file's bands / 10000, in S2_BANDS order, on a clear date.
    with rasterio.open(s1s2_root / "s2" / f"S2_{tile}_{truth['s2_dates'][0].replace('-', '')}.tif") as src:
        order = [src.descriptions.index(b) + 1 for b in S2_BANDS]
        raw = src.read(order, window=((0, 32), (0, 32))).astype(np.float32) / 10000
    valid = sample["s2_valid"][0].numpy()
    assert valid.mean() > 0.95
    np.testing.assert_allclose(sample["s2"][0].numpy()[:, valid], raw[:, valid], rtol=1e-6)
    assert sample["modality_flags"].tolist() == [True, True, True]     # tile 1 has hr
    assert sample["hr"].shape == (4, 64, 64)                           # 5 m = 2x
    lat, lon = sample["latlon"].tolist()
    assert 45.0 < lat < 46.0 and 9.0 < lon < 10.0


def test_separate_band_files_read_like_multiband(s1s2_root, tmp_path):
    make_synthetic_s1s2(tmp_path, tiles=1, size=SIZE, dates=2, seed=0, s2_layout="separate")
    separate = SentinelTimeSeriesDataset(str(tmp_path), chip_size=32, band_stats=None,
                                         time_range=("2021-01-01", "2021-01-31"))
    joint = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32, band_stats=None, tiles=["32TNR"],
                                      time_range=("2021-01-01", "2021-01-31"))
    a, b = separate[0], joint[0]
    assert a["s2_dates"] == b["s2_dates"] == ["2021-01-15"]
    torch.testing.assert_close(a["s2"], b["s2"][:1])


def test_scl_clouds_and_nodata_strip_are_invalid(s1s2_root, truth):
    dataset = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=SIZE, tiles=["32TPR"])
    sample = dataset[0]
    for t, date in enumerate(sample["s2_dates"]):
        with rasterio.open(s1s2_root / "s2" / f"S2_32TPR_{date.replace('-', '')}.tif") as src:
            scl = src.read(src.descriptions.index("SCL") + 1)
        expected = ~np.isin(scl, [3, 8, 9, 10]) & (scl != 0)
        np.testing.assert_array_equal(sample["s2_valid"][t].numpy(), expected)
        assert (sample["s2"][t].numpy()[:, ~expected] == 0).all()
    strip = truth["tiles"]["32TPR"]["nodata_dates"][0]
    t = sample["s2_dates"].index(strip)
    assert not sample["s2_valid"][t, :, : SIZE // 5].any()
    cloudy = [sample["s2_dates"].index(d) for d in truth["tiles"]["32TPR"]["cloudy_dates"]]
    assert all(not sample["s2_valid"][t].all() for t in cloudy)


def test_tile_in_other_utm_zone_is_warped_and_lines_up_with_label(s1s2_root, truth, caplog):
    caplog.set_level(logging.INFO)
    dataset = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32, crs="EPSG:32632")
    marker = truth["tiles"]["31TGL"]["marker"]
    row, col = _marker_pixel(dataset, "31TGL", marker)
    sample = dataset[ChipQuery("31TGL", (col - 8, row - 8, 16, 16))]
    assert sample["crs"] == "EPSG:32632"
    # Marker centre: urban in the label and 0.9 reflectance in every band on the clear date.
    assert sample["label"][8, 8] == marker["cls"]
    np.testing.assert_allclose(sample["s2"][0, :, 8, 8].numpy(), 0.9, atol=0.02)
    assert sample["s1_valid"][:, 8, 8].all()
    # 6 px away lies the water ring / outside: neither urban nor 0.9.
    assert sample["label"][8, 14] != marker["cls"] or sample["s2"][0, 2, 8, 14] < 0.8
    warped = [r.message for r in caplog.records if "WarpedVRT" in r.getMessage()]
    assert any("S2_31TGL" in m for m in warped)
    assert len(warped) == len(set(warped))                          # once per file
    assert not any("32TNR" in m for m in warped)                     # same grid: plain reads


def test_s1_on_20m_grid_is_warped_to_10m(s1s2_root):
    dataset = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32, tiles=["32TPR"])
    sample = dataset[0]
    assert sample["s1"].shape == (DATES, 2, 32, 32)
    assert any("S1_32TPR" in path for path in dataset.reader.warped_files)
    assert not any("S2_32TPR" in path for path in dataset.reader.warped_files)
    # Urban is bright and water dark in VV.
    vv, label = sample["s1"][:, 0].mean(0), sample["label"]
    if (label == 1).any() and (label == 0).any():
        assert vv[label == 1].mean() > vv[label == 0].mean() + 10


def test_integer_index_enumerates_grid_over_roi(s1s2_root):
    dataset = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32, chip_stride=16,
                                        roi=(0, 0, 48, 48))
    windows = {tuple(dataset.get_data_info(i)["window"]) for i in range(len(dataset))}
    assert windows == {(c, r, 32, 32) for r in (0, 16) for c in (0, 16)}
    assert len(dataset) == 3 * 4


def test_linear_s1_and_band_stats_normalisation(s1s2_root, tmp_path):
    db = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32, band_stats=None)[0]
    linear = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32, band_stats=None,
                                       s1_units="linear")[0]
    valid = db["s1_valid"]
    torch.testing.assert_close(linear["s1"][:, 0][valid], 10 ** (db["s1"][:, 0][valid] / 10))
    stats = tmp_path / "stats.json"
    stats.write_text('{"s2": {"bands": %s, "mean": %s, "std": %s}, "s1": {"bands": ["VV", "VH"],'
                     ' "mean": [-10, -20], "std": [2, 4]}}'
                     % (list(S2_BANDS).__repr__().replace("'", '"'), [1000] * 10, [500] * 10))
    norm = SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32, band_stats=str(stats))[0]
    v2 = db["s2_valid"]
    torch.testing.assert_close(norm["s2"][:, 0][v2], (db["s2"][:, 0][v2] * 10000 - 1000) / 500,
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm["s1"][:, 1][valid], (db["s1"][:, 1][valid] + 20) / 4)
