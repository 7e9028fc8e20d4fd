from __future__ import annotations

import pytest
import torch
from rasterio.warp import transform_bounds

from interlace.core.engine.registry import DATA_SAMPLERS, FUNCTIONS
from interlace.domains.remote_sensing.data import (ChipQuery, GridChipSampler, RandomChipSampler,
                                                   SentinelTimeSeriesDataset, collate_time_series)


@pytest.fixture(scope="module")
def dataset(s1s2_root):
    return SentinelTimeSeriesDataset(str(s1s2_root), chip_size=32)


def test_collate_pads_time_with_doy_zero_and_invalid(dataset):
    short = dataset[ChipQuery("32TPR", (0, 0, 32, 32), ("2021-01-01", "2021-06-30"))]
    full = dataset[ChipQuery("32TNR", (0, 0, 32, 32))]
    assert len(short["s2_dates"]) == 2 and len(full["s2_dates"]) == 4
    batch = collate_time_series([short, full])
    inputs = batch["inputs"]
    assert inputs["s2"].shape == (2, 4, 10, 32, 32) and inputs["s1"].shape == (2, 4, 2, 32, 32)
    assert inputs["s2_doy"][0, 2:].tolist() == [0, 0] and (inputs["s2_doy"][0, :2] > 0).all()
    assert not inputs["s2_valid"][0, 2:].any() and (inputs["s2"][0, 2:] == 0).all()
    torch.testing.assert_close(inputs["s2"][1], full["s2"])
    # Only the 32TNR chip has a high-resolution image: zeros and flag False for the other.
    assert inputs["hr"].shape == (2, 4, 64, 64) and (inputs["hr"][0] == 0).all()
    assert inputs["modality_flags"].tolist() == [[True, True, False], [True, True, True]]
    assert inputs["latlon"].shape == (2, 2)
    sample = batch["data_samples"][0]
    assert sample.gt_sem_seg.shape == (32, 32) and sample.gt_sem_seg.dtype == torch.int64
    assert sample.metainfo["crs"] == "EPSG:32632" and len(sample.metainfo["transform"]) == 6
    assert sample.metainfo["dates"]["s2"] == short["s2_dates"] and sample.tile == "32TPR"
    assert FUNCTIONS.get("interlace.collate_time_series") is collate_time_series


def test_collate_gives_missing_modality_one_padded_date(dataset):
    sample = dict(dataset[ChipQuery("32TNR", (0, 0, 32, 32))])
    sample["s1"], sample["s1_doy"] = sample["s1"][:0], sample["s1_doy"][:0]
    sample["s1_valid"], sample["s1_dates"] = sample["s1_valid"][:0], []
    inputs = collate_time_series([sample])["inputs"]
    assert inputs["s1"].shape == (1, 1, 2, 32, 32) and not inputs["s1_valid"].any()


def test_random_sampler_stays_inside_pixel_roi(dataset):
    sampler = RandomChipSampler(dataset, size=16, length=50, roi=(8, 4, 40, 30), seed=3)
    queries = list(sampler)
    assert len(queries) == 50 == len(sampler)
    for q in queries:
        col, row, w, h = q.window
        assert (w, h) == (16, 16) and 8 <= col and col + w <= 48 and 4 <= row and row + h <= 34
    assert {q.tile for q in queries} == set(dataset.grids)
    sampler.set_epoch(1)
    assert [q.window for q in sampler] != [q.window for q in queries]
    assert dataset[queries[0]]["s2"].shape[-2:] == (16, 16)


def test_samplers_in_ground_units_with_time_window(dataset):
    grid = dataset.grids["32TNR"]
    left, bottom, right, top = grid.bounds
    roi = (left + 100, bottom + 50, left + 420, top - 30)       # metres, EPSG:32632
    sampler = GridChipSampler(dataset, size=160, stride=80, units="crs", roi=roi,
                              roi_units="crs", roi_crs="EPSG:32632", tiles=["32TNR"],
                              time_range=("2021-05-01", "2021-12-31"))
    for q in sampler:
        col, row, w, h = q.window
        assert (w, h) == (16, 16)
        assert col >= 10 and col + w <= 42 and row >= 3 and row + h <= 64 - 5
    sample = dataset[next(iter(sampler))]
    assert all(d >= "2021-05-01" for d in sample["s2_dates"])
    wgs = transform_bounds("EPSG:32632", "EPSG:4326", *roi)
    lonlat = RandomChipSampler(dataset, size=16, length=5, roi=wgs, roi_units="crs",
                               roi_crs="EPSG:4326", tiles=["32TNR"])
    assert all(q.window[0] >= 9 for q in lonlat)
    with pytest.raises(ValueError, match="covers no tile"):
        GridChipSampler(dataset, size=16, roi=(1e6, 1e6, 10, 10))


def test_samplers_build_from_registry_like_the_runner(dataset):
    sampler = DATA_SAMPLERS.build(dict(type="GridChipSampler", size=32, stride=32),
                                  default_args=dict(dataset=dataset, seed=0))
    assert {(q.tile, q.window) for q in sampler} == {
        (dataset.get_data_info(i)["tile"], tuple(dataset.get_data_info(i)["window"]))
        for i in range(len(dataset))}
