"""Land-cover labels drawn as polygons (GeoPackage, GeoJSON, Shapefile, FlatGeobuf),
rasterised on each chip's grid.

Files are read once with ``pyogrio`` (GDAL/OGR, no GeoPandas) into shapely geometries and
one class value per feature, taken from a configured attribute. A value is a class index
of the config (``0 ... len(classes) - 1``, 255 = ignore) or a class name. Values outside
the config raise :class:`LabelClassError` naming the file, at dataset construction.
Features whose attribute is empty are left out (logged once per file).

Polygons in another CRS than a tile's grid are reprojected onto it (every vertex through
``rasterio.warp.transform``; once per CRS). A chip is ``rasterio.features.rasterize`` of
the polygons that intersect it (an STR tree finds them), on the chip's own transform:
pixels whose centre lies in a polygon get its class (every touched pixel with
``all_touched``), where polygons overlap the later feature wins, other pixels get `fill`
(255 = ignore by default).
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform as warp_points
from rasterio.windows import Window

from .bands import LABEL_IGNORE
from .grid import TileGrid

__all__ = ["LabelClassError", "VectorLabels", "VECTOR_SUFFIXES"]

logger = logging.getLogger(__name__)

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb")


class LabelClassError(ValueError):
    """A label (raster or polygons) holds class values that the config does not know."""


@dataclass
class _LayerData:
    path: str
    crs: CRS
    geometries: np.ndarray          # (N,) shapely geometries in `crs`
    values: np.ndarray              # (N,) uint8 class index
    projected: dict[str, tuple[np.ndarray, shapely.STRtree]] = field(default_factory=dict)


def _outside_error(path: str, bad: Sequence[Any], classes: Sequence[str]) -> LabelClassError:
    return LabelClassError(f"{path}: class value(s) {list(bad)} outside the {len(classes)} "
                           f"classes of the config {list(classes)} (255 = ignore)")


class VectorLabels:
    """Polygons with a class attribute, rasterised per chip.

    Args:
        path: a file, a glob (``'labels/*.gpkg'``) or a list of them; relative to `root`.
        classes: class names of the config (values may be indices into it or names).
        attribute: the feature attribute holding the class.
        layer: layer of multi-layer files (GeoPackage); None = the first.
        all_touched: burn every pixel a polygon touches, not only those whose centre is in.
        fill: value of pixels outside every polygon.
        root: folder that relative paths start from.
    """

    def __init__(self, path: str | Sequence[str], classes: Sequence[str], *,
                 attribute: str = "class", layer: Optional[str | int] = None,
                 all_touched: bool = False, fill: int = LABEL_IGNORE,
                 root: Optional[str] = None) -> None:
        self.classes = list(classes)
        self.attribute, self.layer = attribute, layer
        self.all_touched, self.fill = bool(all_touched), int(fill)
        patterns = [path] if isinstance(path, str) else list(path)
        self.paths: list[str] = []
        for pattern in patterns:
            full = os.path.join(root, pattern) if root and not os.path.isabs(pattern) else pattern
            if glob.has_magic(full):   # a glob keeps vector files, not a Shapefile's .dbf
                matches = [p for p in sorted(glob.glob(full, recursive=True))
                           if p.lower().endswith(VECTOR_SUFFIXES)]
            else:
                matches = [full]
            self.paths += [p for p in matches if os.path.isfile(p)]
        if not self.paths:
            raise FileNotFoundError(f"label_vector: no vector file matches {patterns}"
                                    f"{f' under {root}' if root else ''}")
        self.layers = [self._load(p) for p in self.paths]

    # -- reading ----------------------------------------------------------------------

    def _class_index(self, path: str, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 class per feature, bool kept) for the attribute values of one file."""
        names = {name: i for i, name in enumerate(self.classes)}
        out = np.full(len(raw), LABEL_IGNORE, np.uint8)
        kept = np.ones(len(raw), bool)
        bad = []
        for i, value in enumerate(raw.tolist()):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                kept[i] = False
                continue
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str):
                text = value.strip()
                if text in names:
                    out[i] = names[text]
                    continue
                try:
                    value = float(text)
                except ValueError:
                    bad.append(value)
                    continue
            number = float(value)
            if number.is_integer() and (0 <= number < len(self.classes) or number == LABEL_IGNORE):
                out[i] = int(number)
            else:
                bad.append(int(number) if number.is_integer() else number)
        if bad:
            raise _outside_error(path, sorted(set(bad), key=str), self.classes)
        return out, kept

    def _load(self, path: str) -> _LayerData:
        import pyogrio  # the vector reader; a light wheel with its own GDAL
        from pyogrio.errors import DataLayerError, DataSourceError
        try:
            info = pyogrio.read_info(path, layer=self.layer)
            fields = [str(f) for f in info["fields"]]
            if self.attribute not in fields:
                raise ValueError(f"{path}: no attribute {self.attribute!r} for the class "
                                 f"(attributes: {fields}); set label_vector's attribute")
            meta, _, wkb, field_data = pyogrio.raw.read(path, layer=self.layer,
                                                        columns=[self.attribute])
        except (DataSourceError, DataLayerError) as error:
            raise ValueError(f"{path}: not a readable vector file ({error})") from None
        if not meta.get("crs"):
            raise ValueError(f"{path}: the polygons have no CRS; write one into the file "
                             "(e.g. ogr2ogr -a_srs EPSG:32632)")
        values, kept = self._class_index(path, np.asarray(field_data[0], dtype=object))
        geometries = shapely.from_wkb(wkb)
        kept &= ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
        if not kept.all():
            logger.warning("label_vector: %s: %d of %d features without a class or geometry "
                           "are left out", path, int((~kept).sum()), len(kept))
        return _LayerData(path, CRS.from_user_input(meta["crs"]), geometries[kept], values[kept])

    # -- rasterising ------------------------------------------------------------------

    def _in_crs(self, layer: _LayerData, crs: CRS) -> tuple[np.ndarray, shapely.STRtree]:
        key = crs.to_wkt()
        if key not in layer.projected:
            geometries = layer.geometries
            if layer.crs != crs:
                def reproject(coords: np.ndarray) -> np.ndarray:
                    xs, ys = warp_points(layer.crs, crs, coords[:, 0], coords[:, 1])
                    return np.column_stack([xs, ys])
                geometries = shapely.transform(geometries, reproject)
            layer.projected[key] = (geometries, shapely.STRtree(geometries))
        return layer.projected[key]

    def rasterize(self, grid: TileGrid, window: Window) -> np.ndarray:
        """(H, W) int64 class raster of `window` on `grid` (`fill` outside polygons)."""
        height, width = int(window.height), int(window.width)
        transform = grid.window_transform(window)
        left, top = transform.c, transform.f
        right, bottom = left + width * transform.a, top + height * transform.e
        area = shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        shapes = []
        for layer in self.layers:
            geometries, tree = self._in_crs(layer, grid.crs)
            hits = np.sort(tree.query(area, predicate="intersects"))
            shapes += [(geometries[i], int(layer.values[i])) for i in hits]
        if not shapes:
            return np.full((height, width), self.fill, np.int64)
        burnt = rasterize(shapes, out_shape=(height, width), transform=transform,
                          fill=self.fill, all_touched=self.all_touched, dtype="uint8")
        return burnt.astype(np.int64)
