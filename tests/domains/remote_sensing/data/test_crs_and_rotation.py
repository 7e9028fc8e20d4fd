"""A GeoTIFF in another CRS than its tile's label, and GeoTIFFs with a rotated (not
north-up) geotransform: both are read onto the label's north-up grid, pixel for pixel
where the geometry allows it; a rotated label raster gets a north-up grid that covers it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject

from interlace.domains.remote_sensing.data import SentinelTimeSeriesDataset, make_synthetic_s1s2
from interlace.domains.remote_sensing.data.grid import grid_of

SIZE = 64
TRANSPOSE = Affine(0.0, 1.0, 0.0, 1.0, 0.0, 0.0)  # pixel (col, row) -> (row, col)


@pytest.fixture
def tile(tmp_path) -> Path:
    make_synthetic_s1s2(tmp_path, tiles=1, size=SIZE, dates=2, seed=0)
    return tmp_path


def _date(path: Path) -> str:
    stamp = path.stem.split("_")[-1]
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"


def _s2_of(dataset, date: str) -> np.ndarray:
    sample = dataset[0]
    return sample["s2"][sample["s2_dates"].index(date)].numpy()


def _rewrite_transposed(path: Path) -> None:
    """The same pixels on the same ground, stored transposed under a rotated geotransform."""
    with rasterio.open(path) as src:
        profile, data, names = src.profile, src.read(), src.descriptions
    profile.update(transform=profile["transform"] * TRANSPOSE, tiled=False)
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ascontiguousarray(data.transpose(0, 2, 1)))
        dst.descriptions = names


def test_s2_file_in_another_crs_is_warped_onto_the_label_grid(tile):
    s2 = sorted((tile / "s2").glob("S2_*.tif"))[0]
    expected = _s2_of(SentinelTimeSeriesDataset(str(tile), chip_size=SIZE), _date(s2))
    with rasterio.open(s2) as src:
        data, profile, names = src.read(), src.profile, src.descriptions
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32633", src.width, src.height, *src.bounds, resolution=10.0)
        warped = np.zeros((src.count, height, width), data.dtype)
        reproject(data, warped, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:32633", resampling=Resampling.nearest)
    profile.update(crs="EPSG:32633", transform=transform, width=width, height=height)
    s2.unlink()
    with rasterio.open(s2, "w", **profile) as dst:
        dst.write(warped)
        dst.descriptions = names
    dataset = SentinelTimeSeriesDataset(str(tile), chip_size=SIZE)
    assert dataset[0]["crs"] == "EPSG:32632"  # the label's grid
    got = _s2_of(dataset, _date(s2))
    inner = (slice(None), slice(8, -8), slice(8, -8))  # away from the warped edges
    corr = np.corrcoef(got[inner].ravel(), expected[inner].ravel())[0, 1]
    assert corr > 0.9, corr


def test_s2_file_with_a_rotated_geotransform_reads_back_pixel_for_pixel(tile):
    s2 = sorted((tile / "s2").glob("S2_*.tif"))[0]
    expected = _s2_of(SentinelTimeSeriesDataset(str(tile), chip_size=SIZE), _date(s2))
    _rewrite_transposed(s2)
    with rasterio.open(s2) as src:
        assert src.transform.b != 0 and src.transform.d != 0
    got = _s2_of(SentinelTimeSeriesDataset(str(tile), chip_size=SIZE), _date(s2))
    inner = (slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(got[inner], expected[inner], atol=1e-5)


def test_rotated_label_gets_a_north_up_grid_covering_it(tile):
    label = tile / "labels" / sorted(p.name for p in (tile / "labels").glob("*.tif"))[0]
    before = SentinelTimeSeriesDataset(str(tile), chip_size=SIZE)[0]
    _rewrite_transposed(label)
    with rasterio.open(label) as src:
        grid = grid_of(src.crs, src.transform, src.width, src.height)
    assert grid.transform.b == 0 and grid.transform.d == 0 and grid.res == (10.0, 10.0)
    assert (grid.width, grid.height) == (SIZE, SIZE)
    assert tuple(grid.transform)[:6] == tuple(before["transform"])
    after = SentinelTimeSeriesDataset(str(tile), chip_size=SIZE)[0]
    assert after["transform"] == before["transform"]
    np.testing.assert_array_equal(after["label"].numpy()[1:-1, 1:-1],
                                  before["label"].numpy()[1:-1, 1:-1])
