"""Sentinel-2 L2A SAFE products as unpacked from the download.

The tree is written with real JPEG 2000 files: the rasterio wheel's GDAL has the
JP2OpenJPEG driver (read and, through CreateCopy, write), so the .jp2 files here are
JPEG 2000, written losslessly.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from interlace.domains.remote_sensing.data import (ChipQuery, S2_BANDS, SceneWindowReader,
                                                   SentinelTimeSeriesDataset)
from interlace.domains.remote_sensing.data.safe_products import _read_metadata, read_boa_offsets

from .layout_files import write_raster

X0, Y0, SIZE = 600000.0, 5000040.0, 24
TEN_M = ("B02", "B03", "B04", "B08")
TWENTY_M = ("B05", "B06", "B07", "B8A", "B11", "B12")

_MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
 <n1:General_Info><Product_Image_Characteristics>
  <QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
  </QUANTIFICATION_VALUES_LIST>
  <BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>
 </Product_Image_Characteristics></n1:General_Info>
</n1:Level-2A_User_Product>
"""


def test_rasterio_gdal_has_the_jp2_driver():
    assert rasterio.drivers.raster_driver_extensions()["jp2"] == "JP2OpenJPEG"
    with rasterio.Env() as env:
        assert "JP2OpenJPEG" in env.drivers()


def _write_product(root: Path, product: str, base: int, with_offsets: bool) -> dict:
    """One SAFE product: 10 m bands valued ``base + 100 k`` (+ a column ramp), constant
    20 m bands, SCL at 20 m with a cloud block, and the copies a product also carries
    (B02 at 20 m, SCL at 60 m, AOT, B01) that must be passed over."""
    tile, stamp = product.split("_")[5][1:], product.split("_")[2]
    granule = root / "s2" / f"{product}.SAFE" / "GRANULE" / f"L2A_T{tile}_A029900_{stamp}"
    stem = f"T{tile}_{stamp}"
    img = granule / "IMG_DATA"
    expected = {}
    cols = np.arange(SIZE, dtype=np.uint16)[None, :]
    for k, band in enumerate(TEN_M):
        data = (np.full((SIZE, SIZE), base + 100 * k, np.uint16) + cols).astype(np.uint16)
        if band == "B02":
            data[0, 0] = 0                      # no data
        write_raster(img / "R10m" / f"{stem}_{band}_10m.jp2", data,
                     Affine(10, 0, X0, 0, -10, Y0), driver="JP2OpenJPEG")
        expected[band] = data
    for k, band in enumerate(TWENTY_M):
        data = np.full((SIZE // 2, SIZE // 2), base + 1000 + 100 * k, np.uint16)
        write_raster(img / "R20m" / f"{stem}_{band}_20m.jp2", data,
                     Affine(20, 0, X0, 0, -20, Y0), driver="JP2OpenJPEG")
        expected[band] = np.repeat(np.repeat(data, 2, 0), 2, 1)
    scl = np.full((SIZE // 2, SIZE // 2), 4, np.uint8)
    scl[2:4, 6:8] = 9                            # cloud, high probability
    write_raster(img / "R20m" / f"{stem}_SCL_20m.jp2", scl, Affine(20, 0, X0, 0, -20, Y0),
                 driver="JP2OpenJPEG")
    expected["SCL"] = np.repeat(np.repeat(scl, 2, 0), 2, 1)
    # Copies at coarser resolutions and layers the dataset does not read.
    write_raster(img / "R20m" / f"{stem}_B02_20m.jp2", np.full((12, 12), 7, np.uint16),
                 Affine(20, 0, X0, 0, -20, Y0), driver="JP2OpenJPEG")
    write_raster(img / "R10m" / f"{stem}_AOT_10m.jp2", np.full((24, 24), 7, np.uint16),
                 Affine(10, 0, X0, 0, -10, Y0), driver="JP2OpenJPEG")
    for band in ("B01", "SCL"):
        write_raster(img / "R60m" / f"{stem}_{band}_60m.jp2", np.full((4, 4), 7, np.uint16),
                     Affine(60, 0, X0, 0, -60, Y0), driver="JP2OpenJPEG")
    if with_offsets:
        offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
        (root / "s2" / f"{product}.SAFE" / "MTD_MSIL2A.xml").write_text(_MTD.format(offsets=offsets))
    return expected


OLD = "S2A_MSIL2A_20210315T103021_N0300_R108_T32TNR_20210315T134010"
NEW = "S2B_MSIL2A_20220320T103019_N0400_R108_T32TNR_20220320T142510"


@pytest.fixture(scope="module")
def safe_root(tmp_path_factory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("safe")
    old = _write_product(root, OLD, 1000, with_offsets=False)
    new = _write_product(root, NEW, 2000, with_offsets=True)
    return root, old, new


def test_safe_products_give_date_tile_bands_offsets_and_scl_mask(safe_root):
    root, old, new = safe_root
    dataset = SentinelTimeSeriesDataset(str(root), chip_size=SIZE, band_stats=None,
                                        modalities=dict(s2="s2_l2a_safe", s1=None, hr=None,
                                                        label=None))
    assert dataset.catalog.skipped == []         # the 20 m / 60 m copies are passed over
    assert list(dataset.grids) == ["32TNR"]
    assert dataset.grids["32TNR"].res == (10.0, 10.0)
    sample = dataset[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]
    assert sample["s2_dates"] == ["2021-03-15", "2022-03-20"]
    assert sample["s2"].shape == (2, 10, SIZE, SIZE)
    valid = np.ones((SIZE, SIZE), bool)
    valid[4:8, 12:16] = False                   # the 20 m cloud block on the 10 m grid
    valid[0, 0] = False                         # DN 0 in B02
    for t, (bands, offset) in enumerate(((old, 0), (new, -1000))):
        np.testing.assert_array_equal(sample["s2_valid"][t].numpy(), valid)
        for c, band in enumerate(S2_BANDS):
            want = (bands[band].astype(np.float32) + offset) / 10000
            np.testing.assert_allclose(sample["s2"][t, c].numpy()[valid], want[valid],
                                       rtol=0, atol=1e-6, err_msg=f"{band} t={t}")


def test_boa_offsets_come_from_the_metadata_or_the_baseline(safe_root, tmp_path):
    root, _, _ = safe_root
    assert read_boa_offsets(str(root / "s2" / f"{OLD}.SAFE")) == {}
    offsets = read_boa_offsets(str(root / "s2" / f"{NEW}.SAFE"))
    assert offsets["B02"] == offsets["B12"] == -1000.0 and len(offsets) == 13
    bare = tmp_path / "S2A_MSIL2A_20230101T103021_N0509_R108_T32TNR_20230101T134010.SAFE"
    bare.mkdir()
    assert read_boa_offsets(str(bare))["B8A"] == -1000.0   # baseline 05.09, no MTD file


def test_scene_reader_finds_the_tile_of_a_file_inside_a_product(safe_root):
    root, _, _ = safe_root
    reader = SceneWindowReader(str(root), window=SIZE, overlap=0, dataset=dict(
        band_stats=None, modalities=dict(s2="s2_l2a_safe", s1=None, hr=None, label=None)))
    path = next((root / "s2").rglob("*_B02_10m.jp2"))
    assert reader.tile_of(str(path)) == "32TNR"
    assert reader.describe(str(path))["width"] == SIZE


def test_zipped_products_read_like_unpacked_ones(safe_root, tmp_path):
    root, _, _ = safe_root
    for product in (OLD, NEW):   # the download: one zip holding the .SAFE folder
        shutil.make_archive(str(tmp_path / "s2" / product), "zip", root / "s2", f"{product}.SAFE")
    options = dict(chip_size=SIZE, band_stats=None,
                   modalities=dict(s2="s2_l2a_safe", s1=None, hr=None, label=None))
    zipped = SentinelTimeSeriesDataset(str(tmp_path), **options)
    assert zipped.catalog.skipped == []
    assert all(r.path.startswith("/vsizip/") for a in zipped.catalog.tiles["32TNR"]["s2"]
               for r in a.files)
    a = zipped[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]
    b = SentinelTimeSeriesDataset(str(root), **options)[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]
    assert a["s2_dates"] == b["s2_dates"] == ["2021-03-15", "2022-03-20"]
    np.testing.assert_array_equal(a["s2"].numpy(), b["s2"].numpy())     # offsets applied too
    np.testing.assert_array_equal(a["s2_valid"].numpy(), b["s2_valid"].numpy())
    # The offsets come from the metadata inside the zip, not from the baseline fallback.
    assert b"BOA_ADD_OFFSET" in _read_metadata(f"/vsizip/{tmp_path / 's2' / NEW}.zip/{NEW}.SAFE")
