"""Sentinel-1 GRD / RTC GeoTIFFs in linear power or in dB, converted by option."""
from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from interlace.domains.remote_sensing.data import ChipQuery, SentinelTimeSeriesDataset

from .layout_files import write_raster

SIZE = 8


@pytest.fixture
def linear_root(tmp_path):
    """One RTC-style date in power: VV 0.1, VH 0.01; a zero border pixel, a negative
    (noise-subtracted) pixel and a NaN pixel, none of them usable."""
    power = np.stack([np.full((SIZE, SIZE), 0.1, np.float32), np.full((SIZE, SIZE), 0.01, np.float32)])
    power[:, 0, 0] = 0.0
    power[0, 0, 1] = -0.002
    power[1, 0, 2] = np.nan
    write_raster(tmp_path / "s1" / "S1_32TNR_20210315.tif", power,
                 Affine(10, 0, 600000, 0, -10, 5000000), descriptions=("VV", "VH"))
    return tmp_path


def _sample(root, **options):
    dataset = SentinelTimeSeriesDataset(str(root), chip_size=SIZE, band_stats=None,
                                        modalities=dict(s2=None, hr=None, label=None), **options)
    return dataset[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]


def _expected_valid() -> np.ndarray:
    valid = np.ones((SIZE, SIZE), bool)
    valid[0, :3] = False
    return valid


def test_linear_power_files_returned_in_db(linear_root):
    sample = _sample(linear_root, s1_file_units="linear", s1_units="db")
    valid = _expected_valid()
    np.testing.assert_array_equal(sample["s1_valid"][0].numpy(), valid)
    s1 = sample["s1"][0].numpy()
    np.testing.assert_allclose(s1[0][valid], -10.0, rtol=0, atol=1e-5)   # 10 log10(0.1)
    np.testing.assert_allclose(s1[1][valid], -20.0, rtol=0, atol=1e-5)   # 10 log10(0.01)
    assert (s1[:, ~valid] == 0).all() and np.isfinite(s1).all()


def test_linear_power_files_kept_linear_with_zeros_as_no_data(linear_root):
    sample = _sample(linear_root, s1_file_units="linear", s1_units="linear")
    valid = _expected_valid()
    np.testing.assert_array_equal(sample["s1_valid"][0].numpy(), valid)
    np.testing.assert_allclose(sample["s1"][0, 0].numpy()[valid], 0.1, rtol=1e-6)


def test_db_files_round_trip_with_linear_files(linear_root, tmp_path):
    power = np.full((2, SIZE, SIZE), 0.05, np.float32)
    db_root = tmp_path / "db"
    write_raster(db_root / "s1" / "S1_32TNR_20210315.tif", 10 * np.log10(power),
                 Affine(10, 0, 600000, 0, -10, 5000000), nodata=-9999.0, descriptions=("VV", "VH"))
    as_linear = _sample(db_root, s1_units="linear")          # files in dB (the default)
    np.testing.assert_allclose(as_linear["s1"][0].numpy(), power, rtol=1e-5)
    with pytest.raises(ValueError, match="s1_file_units must be 'db' or 'linear', not 'amplitude'"):
        _sample(db_root, s1_file_units="amplitude")
