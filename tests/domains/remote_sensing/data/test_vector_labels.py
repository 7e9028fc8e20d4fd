"""Polygon labels (GeoPackage, GeoJSON in lon/lat, Shapefile in another UTM zone),
rasterised on the chip grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from affine import Affine
from rasterio.warp import transform as warp_points

from interlace.domains.remote_sensing.data import (ChipQuery, LabelClassError,
                                                   SentinelTimeSeriesDataset)

from .layout_files import UTM32, write_s2_multiband

SIZE, X0, Y0, RES = 32, 600000.0, 5000000.0, 10.0


def _pixel_box(col0: int, row0: int, col1: int, row1: int) -> shapely.Polygon:
    """Polygon covering pixels [col0, col1) x [row0, row1) of the tile grid (UTM 32N)."""
    return shapely.box(X0 + col0 * RES, Y0 - row1 * RES, X0 + col1 * RES, Y0 - row0 * RES)


def _to_crs(geometry: shapely.Geometry, crs: str) -> shapely.Geometry:
    def move(coords: np.ndarray) -> np.ndarray:
        xs, ys = warp_points(UTM32, crs, coords[:, 0], coords[:, 1])
        return np.column_stack([xs, ys])
    return shapely.transform(geometry, move)


def _write_vector(path: Path, geometries, values, crs: str, driver: str,
                  field: str = "class") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wkb = np.array(shapely.to_wkb(list(geometries)), dtype=object)
    pyogrio.raw.write(str(path), wkb, [np.asarray(values)], fields=[field], crs=crs,
                      geometry_type="Polygon", driver=driver)
    return path


@pytest.fixture
def polygon_root(tmp_path) -> Path:
    write_s2_multiband(tmp_path / "s2" / "S2_32TNR_20210315.tif",
                       Affine(RES, 0, X0, 0, -RES, Y0), SIZE)
    labels = tmp_path / "labels"
    # GeoPackage in the tile's CRS: forest, then an urban field over part of it.
    _write_vector(labels / "fields.gpkg", [_pixel_box(0, 0, 16, 16), _pixel_box(8, 8, 16, 16)],
                  np.array([3, 1], np.int32), UTM32, "GPKG")
    # GeoJSON in lon/lat with class names.
    _write_vector(labels / "water.geojson", [_to_crs(_pixel_box(20, 20, 28, 28), "EPSG:4326")],
                  np.array(["water"], dtype=object), "EPSG:4326", "GeoJSON")
    # Shapefile in the neighbouring UTM zone.
    _write_vector(labels / "crops.shp", [_to_crs(_pixel_box(0, 24, 8, 32), "EPSG:32633")],
                  np.array([5], np.int32), "EPSG:32633", "ESRI Shapefile")
    return tmp_path


def _expected() -> np.ndarray:
    label = np.full((SIZE, SIZE), 255, np.int64)
    label[0:16, 0:16] = 3
    label[8:16, 8:16] = 1      # the later feature wins
    label[20:28, 20:28] = 0    # 'water'
    label[24:32, 0:8] = 5
    return label


def _dataset(root: Path, **label_vector) -> SentinelTimeSeriesDataset:
    return SentinelTimeSeriesDataset(str(root), chip_size=16, band_stats=None,
                                     modalities=dict(s1=None, hr=None),
                                     label_vector=dict(path="labels/*", **label_vector))


def test_polygons_in_three_formats_and_crss_are_burnt_on_the_chip_grid(polygon_root):
    dataset = _dataset(polygon_root, attribute="class")
    assert len(dataset.vector_labels.paths) == 3          # .shx / .dbf / .prj are not read
    whole = dataset[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]["label"].numpy()
    np.testing.assert_array_equal(whole, _expected())
    # An offset chip uses its own transform.
    chip = dataset[ChipQuery("32TNR", (8, 12, 16, 16))]["label"].numpy()
    np.testing.assert_array_equal(chip, _expected()[12:28, 8:24])


def test_all_touched_burns_every_touched_pixel(polygon_root, tmp_path):
    root = tmp_path / "touched"
    write_s2_multiband(root / "s2" / "S2_32TNR_20210315.tif", Affine(RES, 0, X0, 0, -RES, Y0), SIZE)
    # A thin strip inside column 4: no pixel centre is in it, one column is touched.
    strip = shapely.box(X0 + 41, Y0 - 100, X0 + 44, Y0)
    _write_vector(root / "labels" / "strip.gpkg", [strip], np.array([2], np.int32), UTM32, "GPKG")
    centre = _dataset(root)[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]["label"].numpy()
    touched = _dataset(root, all_touched=True)[ChipQuery("32TNR", (0, 0, SIZE, SIZE))]["label"].numpy()
    assert (centre == 255).all()
    assert (touched[:10, 4] == 2).all() and (touched == 2).sum() == 10


@pytest.mark.parametrize("bad, shown", [(np.array([3, 9], np.int32), "[9]"),
                                        (np.array(["forest", "lava"], dtype=object), "['lava']")])
def test_class_outside_config_raises_the_label_class_error(tmp_path, bad, shown):
    write_s2_multiband(tmp_path / "s2" / "S2_32TNR_20210315.tif", Affine(RES, 0, X0, 0, -RES, Y0), SIZE)
    path = _write_vector(tmp_path / "labels" / "bad.gpkg",
                         [_pixel_box(0, 0, 4, 4), _pixel_box(4, 4, 8, 8)], bad, UTM32, "GPKG")
    with pytest.raises(LabelClassError) as error:
        _dataset(tmp_path)
    message = str(error.value)
    assert str(path) in message and shown in message and "outside the 6 classes" in message


def test_missing_attribute_and_missing_files_are_named(polygon_root, tmp_path):
    with pytest.raises(ValueError, match=r"labels/crops.shp: no attribute 'landcover'.*\['class'\]"):
        _dataset(polygon_root, attribute="landcover")
    with pytest.raises(FileNotFoundError, match="no vector file matches"):
        SentinelTimeSeriesDataset(str(polygon_root), modalities=dict(s1=None, hr=None),
                                  label_vector=dict(path="nothing/*.gpkg"))
