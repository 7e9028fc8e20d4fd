"""Every kind of bad input is skipped with a logged reason naming the file, or refused
with an error naming it."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from interlace.domains.remote_sensing.data import (ChipQuery, LabelClassError,
                                                   SentinelTimeSeriesDataset, make_synthetic_s1s2)


def _skipped(dataset, name):
    return [reason for path, reason in dataset.catalog.skipped if path.endswith(name)]


def _first(folder, pattern="*.tif"):
    return sorted(folder.glob(pattern))[0]


def test_corrupt_and_truncated_tiffs_are_skipped(s1s2_copy, caplog):
    caplog.set_level(logging.WARNING)
    s2 = _first(s1s2_copy / "s2", "S2_32TNR_*.tif")
    s1 = _first(s1s2_copy / "s1", "S1_32TNR_*.tif")
    s2.write_bytes(s2.read_bytes()[:200])                       # truncated header
    s1.write_bytes(b"this is not a tiff" * 10)
    dataset = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=32, tiles=["32TNR"])
    assert _skipped(dataset, s2.name) and "not a readable GeoTIFF" in _skipped(dataset, s2.name)[0]
    assert _skipped(dataset, s1.name)
    assert s2.name in caplog.text
    sample = dataset[0]
    assert len(sample["s2_dates"]) == 3 and len(sample["s1_dates"]) == 3


def test_truncated_pixel_data_drops_the_date_with_a_logged_reason(s1s2_copy, caplog):
    caplog.set_level(logging.WARNING)
    s2 = _first(s1s2_copy / "s2", "S2_32TNR_*.tif")
    cog = s2.with_suffix(".cog")
    rasterio.shutil.copy(s2, cog, driver="COG", blocksize=16)  # header first, then tiles
    data = cog.read_bytes()
    s2.write_bytes(data[: int(len(data) * 0.6)])                # header fine, tiles cut
    cog.unlink()
    dataset = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=64, tiles=["32TNR"])
    sample = dataset[0]
    assert len(sample["s2_dates"]) == 3
    assert dataset.skipped["unreadable_date"] >= 1 and s2.name in caplog.text


def test_missing_band_skips_that_date(tmp_path, caplog):
    make_synthetic_s1s2(tmp_path, tiles=1, size=32, dates=2, seed=0, s2_layout="separate")
    victim = _first(tmp_path / "s2", "S2_*_20210115_B05.tif")
    victim.unlink()
    dataset = SentinelTimeSeriesDataset(str(tmp_path), chip_size=32)
    reasons = [r for _, r in dataset.catalog.skipped]
    assert any("lacks band(s) ['B05']" in r for r in reasons)
    assert dataset[0]["s2_dates"] == ["2021-12-11"]


def test_file_without_crs_is_skipped(s1s2_copy):
    s2 = _first(s1s2_copy / "s2", "S2_32TNR_*.tif")
    with rasterio.open(s2) as src:
        profile, data = src.profile, src.read()
    profile.pop("crs")
    s2.unlink()
    with rasterio.open(s2, "w", **profile) as dst:
        dst.write(data)
    dataset = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=32, tiles=["32TNR"])
    assert "has no CRS" in _skipped(dataset, s2.name)[0]


def test_unparseable_date_is_skipped(s1s2_copy):
    s2 = _first(s1s2_copy / "s2", "S2_32TNR_*.tif")
    bad = s2.with_name("S2_32TNR_20211345.tif")                 # month 13
    shutil.copy(s2, bad)
    dataset = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=32, tiles=["32TNR"])
    assert "cannot parse date '20211345'" in _skipped(dataset, bad.name)[0]


def test_s1_that_does_not_overlap_s2_is_skipped(s1s2_copy):
    s1 = _first(s1s2_copy / "s1", "S1_32TNR_*.tif")
    with rasterio.open(s1, "r+") as dst:
        t = dst.transform
        dst.transform = Affine(t.a, 0, t.c + 100_000, 0, t.e, t.f)   # 100 km east
    dataset = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=32, tiles=["32TNR"])
    assert "does not overlap the grid of tile 32TNR" in _skipped(dataset, s1.name)[0]
    assert len(dataset[0]["s1_dates"]) == 3


def test_label_classes_outside_config_are_refused(s1s2_copy):
    label = s1s2_copy / "labels" / "LABEL_32TNR.tif"
    with rasterio.open(label, "r+") as dst:
        data = dst.read(1)
        data[0, 0] = 17
        dst.write(data, 1)
    dataset = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=32, tiles=["32TNR"])
    with pytest.raises(LabelClassError, match=r"LABEL_32TNR\.tif: class value\(s\) \[17\]"):
        dataset[0]


def test_all_nodata_chip_is_skipped_in_training_kept_in_test(s1s2_copy, caplog):
    caplog.set_level(logging.WARNING)
    for path in list((s1s2_copy / "s2").glob("S2_32TNR_*.tif")) + list((s1s2_copy / "s1").glob("S1_32TNR_*.tif")):
        with rasterio.open(path, "r+") as dst:
            data = dst.read()
            data[:, :32, :32] = dst.nodata
            dst.write(data)
    (s1s2_copy / "hr" / "HR_32TNR.tif").unlink()
    train = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=32, tiles=["32TNR"])
    assert train.read_chip(ChipQuery("32TNR", (0, 0, 32, 32))) is None
    assert "has no valid S2/S1 pixel" in caplog.text and train.skipped["empty_chip"] == 1
    sample = train[0]                                          # mmengine draws another chip
    assert sample["window"] != (0, 0, 32, 32)
    test = SentinelTimeSeriesDataset(str(s1s2_copy), chip_size=32, tiles=["32TNR"], test_mode=True)
    kept = test[0]
    assert kept["window"] == (0, 0, 32, 32) and not kept["s2_valid"].any()
