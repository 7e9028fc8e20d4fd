"""The common grid keeps the reference raster's pixel origin: native pixels stay native."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from interlace.domains.remote_sensing.data import (ChipQuery, SentinelTimeSeriesDataset,
                                                   reproject_grid)
from interlace.domains.remote_sensing.data.grid import grid_of

from .layout_files import UTM32, write_raster, write_s2_multiband

# Landsat's UTM grid: pixel corners at ...005 m.
X0, Y0, SIZE = 694005.0, 5000025.0, 16


def test_reproject_grid_keeps_the_reference_origin_in_its_crs():
    native = grid_of(UTM32, Affine(10, 0, X0, 0, -10, Y0), 48, 48)
    coarse = reproject_grid(native, res=30)
    assert (coarse.transform.c, coarse.transform.f) == (X0, Y0)
    assert (coarse.width, coarse.height, coarse.res) == (16, 16, (30.0, 30.0))
    fine = reproject_grid(native, res=5)
    assert (fine.transform.c, fine.transform.f, fine.width) == (X0, Y0, 96)
    # Another CRS has no native grid: the origin snaps to multiples of the pixel size.
    other = reproject_grid(native, crs="EPSG:32633", res=30)
    assert other.transform.c % 30 == 0 and other.transform.f % 30 == 0


def _landsat_like_root(tmp_path, label_x0: float):
    """A 10 m label raster (origin x = `label_x0`), a 30 m S2 file on Landsat's grid and a
    30 m S1 file half a pixel (15 m) east of it."""
    labels = np.zeros((3 * SIZE, 3 * SIZE), np.uint8)
    write_raster(tmp_path / "labels" / "LABEL_T1.tif", labels,
                 Affine(10, 0, label_x0, 0, -10, Y0), nodata=255)
    s2 = write_s2_multiband(tmp_path / "s2" / "S2_T1_20210315.tif",
                            Affine(30, 0, X0, 0, -30, Y0), SIZE)
    ramp = np.tile(np.linspace(-20, -5, SIZE, dtype=np.float32), (2, SIZE, 1))
    write_raster(tmp_path / "s1" / "S1_T1_20210315.tif", ramp,
                 Affine(30, 0, X0 + 15, 0, -30, Y0), nodata=-9999.0,
                 descriptions=("VV", "VH"))
    return s2, ramp


def test_native_30m_raster_is_read_bit_identical_and_off_grid_one_resampled(tmp_path):
    s2, ramp = _landsat_like_root(tmp_path, label_x0=X0)
    dataset = SentinelTimeSeriesDataset(str(tmp_path), res=30, chip_size=SIZE, band_stats=None,
                                        modalities=dict(hr=None))
    grid = dataset.grids["T1"]
    assert (grid.transform.c, grid.transform.f, grid.res) == (X0, Y0, (30.0, 30.0))
    sample = dataset[ChipQuery("T1", (0, 0, SIZE, SIZE))]
    # S2 on the grid: plain window read, values exactly the stored ones / 10000.
    assert not any("S2_T1" in p for p in dataset.reader.warped_files)
    assert sample["s2_valid"].all()
    expected = (s2[:10].astype(np.float32) * np.float32(1 / 10000))
    np.testing.assert_array_equal(sample["s2"][0].numpy(), expected)
    # S1 half a pixel off: warped (bilinear), so values move by half a ramp step.
    assert any("S1_T1" in p for p in dataset.reader.warped_files)
    vv = sample["s1"][0, 0].numpy()
    step = float(ramp[0, 0, 1] - ramp[0, 0, 0])
    inside = sample["s1_valid"][0].numpy()
    assert inside[:, 1:-1].all()
    np.testing.assert_allclose(vv[:, 2:-2], ramp[0][:, 1:-3] + step / 2, rtol=0, atol=1e-4)


def test_grid_reference_picks_the_raster_whose_pixels_stay_native(tmp_path):
    # The label sits on a 10 m grid at a multiple of 30 m; Landsat is 5 m off that.
    s2, _ = _landsat_like_root(tmp_path, label_x0=X0 - 5)
    on_label = SentinelTimeSeriesDataset(str(tmp_path), res=30, chip_size=SIZE, band_stats=None,
                                         modalities=dict(hr=None))
    on_label[ChipQuery("T1", (0, 0, SIZE, SIZE))]
    assert any("S2_T1" in p for p in on_label.reader.warped_files)
    on_s2 = SentinelTimeSeriesDataset(str(tmp_path), res=30, chip_size=SIZE, band_stats=None,
                                      modalities=dict(hr=None), grid_reference="s2")
    sample = on_s2[ChipQuery("T1", (0, 0, SIZE, SIZE))]
    assert not any("S2_T1" in p for p in on_s2.reader.warped_files)
    np.testing.assert_array_equal(sample["s2"][0].numpy(),
                                  s2[:10].astype(np.float32) * np.float32(1 / 10000))
    with pytest.raises(ValueError, match="grid_reference 'landsat' is not a modality"):
        SentinelTimeSeriesDataset(str(tmp_path), grid_reference="landsat")


def test_label_raster_is_still_read_exactly_on_its_own_grid(tmp_path):
    _landsat_like_root(tmp_path, label_x0=X0)
    dataset = SentinelTimeSeriesDataset(str(tmp_path), chip_size=SIZE, band_stats=None,
                                        modalities=dict(hr=None))
    with rasterio.open(tmp_path / "labels" / "LABEL_T1.tif") as src:
        assert dataset.grids["T1"].transform == src.transform
