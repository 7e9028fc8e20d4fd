"""Windowed reads of GeoTIFF bands onto a tile grid, through a WarpedVRT only when needed.

:class:`GridWindowReader` keeps a bounded LRU cache of open files (and of their warped
views), so a dataset over thousands of files never holds more than ``cache_size``
handles; evicted files are closed. Handles are not pickled: a DataLoader worker opens its
own. A file that matches the grid (same CRS and pixel size, whole-pixel offset) is read
with a plain window; any other goes through ``rasterio.vrt.WarpedVRT`` onto the grid,
and the log says so once per file. Either way only the window's pixels are read.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Optional, Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .file_catalog import RasterFile
from .grid import TileGrid, file_matches_grid

__all__ = ["GridWindowReader", "RasterReadError"]

logger = logging.getLogger(__name__)


class RasterReadError(OSError):
    """Pixels of a file could not be read (truncated or corrupt data); names the file."""


class GridWindowReader:
    """Read bands of :class:`RasterFile` s for a window of a :class:`TileGrid`.

    Args:
        cache_size: most files (plus their warped views) kept open at once.
    """

    def __init__(self, cache_size: int = 32) -> None:
        self.cache_size = max(1, int(cache_size))
        self._cache: "OrderedDict[tuple, Any]" = OrderedDict()
        self._warp_logged: set[str] = set()
        self.warped_files: set[str] = set()

    # Handles cannot cross process boundaries; workers reopen what they need.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def close(self) -> None:
        """Close every cached handle."""
        while self._cache:
            _, handle = self._cache.popitem(last=False)
            handle.close()

    def __del__(self) -> None:  # best effort; close() is the explicit way
        try:
            self.close()
        except Exception:
            pass

    def _cached(self, key: tuple, opener) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        handle = opener()
        self._cache[key] = handle
        while len(self._cache) > self.cache_size:
            _, old = self._cache.popitem(last=False)
            old.close()
        return handle

    def _dataset(self, raster: RasterFile, grid: TileGrid, resampling: Resampling):
        src = self._cached(("src", raster.path), lambda: rasterio.open(raster.path))
        if file_matches_grid(raster.crs, raster.transform, grid):
            return src, False
        if raster.path not in self._warp_logged:
            self._warp_logged.add(raster.path)
            logger.info("remote sensing data: %s (%s, %.4g m) is warped onto the tile grid "
                        "(%s, %.4g m) through a WarpedVRT", raster.path, raster.crs.to_string(),
                        abs(raster.transform.a), grid.crs.to_string(), grid.res[0])
        self.warped_files.add(raster.path)
        vrt = self._cached(("vrt", raster.path, grid.key(), resampling.name), lambda: WarpedVRT(
            src, crs=grid.crs, transform=grid.transform, width=grid.width,
            height=grid.height, resampling=resampling, src_nodata=raster.nodata,
            nodata=raster.nodata))
        return vrt, True

    def read(self, raster: RasterFile, indexes: Sequence[int], grid: TileGrid, window: Window,
             resampling: Resampling = Resampling.nearest,
             fill: Optional[float] = None) -> np.ndarray:
        """Bands `indexes` (1-based) of `raster` over `window` of `grid`.

        Returns:
            (len(indexes), window.height, window.width) array in the file's dtype; pixels
            outside the file are `fill` (default: the file's nodata, else 0).

        Raises:
            RasterReadError: the file's pixels cannot be read (names the file).
        """
        fill_value = fill if fill is not None else (raster.nodata if raster.nodata is not None else 0)
        try:
            dataset, warped = self._dataset(raster, grid, resampling)
            if not warped:
                # Same grid up to a whole-pixel shift: move the window into file pixels.
                dx = round((grid.transform.c - raster.transform.c) / grid.transform.a)
                dy = round((grid.transform.f - raster.transform.f) / grid.transform.e)
                window = Window(window.col_off + dx, window.row_off + dy, window.width,
                                window.height)
            inside = (window.col_off >= 0 and window.row_off >= 0
                      and window.col_off + window.width <= dataset.width
                      and window.row_off + window.height <= dataset.height)
            return dataset.read(list(indexes), window=window, boundless=not inside,
                                fill_value=fill_value)
        except rasterio.errors.RasterioIOError as error:
            raise RasterReadError(f"{raster.path}: cannot read pixels "
                                  f"({str(error).splitlines()[0]})") from None
