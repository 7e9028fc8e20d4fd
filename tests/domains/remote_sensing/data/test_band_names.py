"""One band per file under names the project does not use: Landsat ``..._SR_B2.TIF``,
scene folders of COGs named ``B02.tif`` or ``blue.tif``; band names by regex + map."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from interlace.domains.remote_sensing.data import (ChipQuery, S2_BANDS, SentinelTimeSeriesDataset,
                                                   build_catalog)
from interlace.domains.remote_sensing.data.file_catalog import ModalitySpec
from interlace.domains.remote_sensing.data.layouts import LANDSAT_OLI_BAND_MAP, S2_COG_BAND_MAP

from .layout_files import write_raster

SIZE = 16
LANDSAT_SCENE = "LC08_L2SP_196029_20210315_20210324_02_T1"


def _band_data(k: int) -> np.ndarray:
    return (np.full((SIZE, SIZE), 1000 * (k + 1), np.uint16)
            + np.arange(SIZE, dtype=np.uint16)[None, :])


def _landsat_scene(root: Path) -> dict[str, np.ndarray]:
    """Bands 1-7 as SR_B<n>.TIF plus a QA layer, in the scene's folder."""
    folder = root / "landsat" / LANDSAT_SCENE
    written = {}
    for n in range(1, 8):
        written[str(n)] = _band_data(n)
        write_raster(folder / f"{LANDSAT_SCENE}_SR_B{n}.TIF", written[str(n)],
                     Affine(30, 0, 694005, 0, -30, 5000025), nodata=0)
    write_raster(folder / f"{LANDSAT_SCENE}_QA_PIXEL.TIF", np.ones((SIZE, SIZE), np.uint16),
                 Affine(30, 0, 694005, 0, -30, 5000025))
    return written


def test_landsat_layout_maps_band_numbers_to_s2_names(tmp_path):
    written = _landsat_scene(tmp_path)
    dataset = SentinelTimeSeriesDataset(str(tmp_path), chip_size=SIZE, band_stats=None,
                                        modalities=dict(s2="landsat_c2_l2", s1=None, hr=None,
                                                        label=None))
    assert dataset.catalog.skipped == []          # B1 and QA_PIXEL are not bands of it
    sample = dataset[ChipQuery("196029", (0, 0, SIZE, SIZE))]
    assert sample["s2_dates"] == ["2021-03-15"]
    assert sample["s2"].shape == (1, 6, SIZE, SIZE)
    for c, (number, band) in enumerate(LANDSAT_OLI_BAND_MAP.items()):
        np.testing.assert_array_equal(sample["s2"][0, c].numpy(),
                                      written[number].astype(np.float32) * np.float32(1 / 10000),
                                      err_msg=band)


def test_band_regex_and_map_given_by_hand(tmp_path):
    _landsat_scene(tmp_path)
    spec = ModalitySpec(
        name="s2", folder="landsat", filename_glob="*.TIF", bands=("B04", "B08"),
        filename_regex=r"^LC08_L2SP_(?P<tile>\d{6})_(?P<date>\d{8})_.*\.TIF$",
        band_regex=r"_B(?P<band>\d+)\.TIF$", band_map={"4": "B04", "5": "B08"})
    catalog = build_catalog(str(tmp_path), [spec])
    (acquisition,) = catalog.tiles["196029"]["s2"]
    assert {b: Path(r.path).name[-6:] for b, (r, _) in acquisition.sources.items()} == {
        "B04": "B4.TIF", "B08": "B5.TIF"}
    with pytest.raises(ValueError, match="band_regex of 's2' needs a named group 'band'"):
        build_catalog(str(tmp_path), [ModalitySpec(**{**spec.__dict__, "band_regex": r"_B\d"})])


@pytest.mark.parametrize("naming", ["codes", "names"])
def test_scene_folders_of_cogs_named_by_band_code_or_name(tmp_path, naming):
    names = {v: k for k, v in S2_COG_BAND_MAP.items() if k.islower()}   # B02 -> blue
    scenes = ("S2B_32TNR_20210315_0_L2A", "S2A_32TNR_20210320_1_L2A")
    for t, scene in enumerate(scenes):
        # Real catalogues nest scenes under tile / year / month folders.
        folder = tmp_path / "s2" / "32" / "T" / "NR" / "2021" / "3" / scene
        for k, band in enumerate((*S2_BANDS, "SCL")):
            data = _band_data(k + t) if band != "SCL" else np.full((SIZE, SIZE), 4, np.uint16)
            name = band if naming == "codes" else names[band]
            write_raster(folder / f"{name}.tif", data, Affine(10, 0, 600000, 0, -10, 5000000),
                         nodata=0)
        write_raster(folder / "preview.tif", np.zeros((SIZE, SIZE), np.uint8),
                     Affine(10, 0, 600000, 0, -10, 5000000))
    dataset = SentinelTimeSeriesDataset(str(tmp_path), chip_size=SIZE, band_stats=None,
                                        modalities=dict(s2="s2_cogs", s1=None, hr=None,
                                                        label=None))
    assert dataset.catalog.skipped == []
    sample = dataset[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]
    assert sample["s2_dates"] == ["2021-03-15", "2021-03-20"]
    assert sample["s2_valid"].all()
    for t in range(2):
        for c in range(10):
            np.testing.assert_array_equal(sample["s2"][t, c].numpy(),
                                          _band_data(c + t).astype(np.float32) * np.float32(1 / 10000))


def test_finest_band_file_sets_the_grid(tmp_path):
    # 'a' (20 m) sorts before 'b' (10 m); the grid is still the 10 m one.
    write_raster(tmp_path / "s2" / "S2_T1_20210315_a.tif", np.full((4, 4), 500, np.uint16),
                 Affine(20, 0, 600000, 0, -20, 5000000), nodata=0)
    write_raster(tmp_path / "s2" / "S2_T1_20210315_b.tif", _band_data(0)[:8, :8],
                 Affine(10, 0, 600000, 0, -10, 5000000), nodata=0)
    dataset = SentinelTimeSeriesDataset(str(tmp_path), chip_size=8, band_stats=None, modalities=dict(
        s2=dict(band_regex=r"_(?P<band>[ab])\.tif$", band_map={"a": "B05", "b": "B02"},
                filename_regex=r"^S2_(?P<tile>T1)_(?P<date>\d{8})_[ab]\.tif$",
                bands=("B02", "B05"), mask_band=None),
        s1=None, hr=None, label=None))
    assert dataset.grids["T1"].res == (10.0, 10.0) and dataset.grids["T1"].width == 8
    sample = dataset[0]
    np.testing.assert_array_equal(sample["s2"][0, 0].numpy(),
                                  _band_data(0)[:8, :8].astype(np.float32) * np.float32(1 / 10000))
    np.testing.assert_allclose(sample["s2"][0, 1].numpy(), 0.05, rtol=1e-6)
