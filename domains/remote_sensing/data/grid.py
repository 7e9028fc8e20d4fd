"""The pixel grid a tile is read on, and how a file relates to it.

Every chip of a tile is a window on one :class:`TileGrid` (CRS + affine transform +
size). The grid is the label raster's (else the first S2 file's, or the first file of the
modality named by the dataset's ``grid_reference``) unless the dataset is given a CRS
and/or resolution, in which case the tile's extent is laid on a grid in that CRS with
that resolution (TorchGeo: the first file sets CRS and resolution unless the user does;
everything else is warped to match). In the reference's own CRS the grid keeps the
reference raster's pixel origin, so native pixels stay native.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import array_bounds
from rasterio.warp import transform as warp_points
from rasterio.warp import transform_bounds
from rasterio.windows import Window

__all__ = ["TileGrid", "crs_to_string", "grid_of", "reproject_grid", "file_overlaps_grid",
           "file_matches_grid", "window_latlon"]


@dataclass(frozen=True)
class TileGrid:
    """A north-up pixel grid: `transform` maps (col, row) to CRS coordinates."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        return array_bounds(self.height, self.width, self.transform)  # (west, south, east, north)

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def key(self) -> tuple:
        """Hashable identity (cache key of warped views)."""
        return (self.crs.to_wkt(), tuple(self.transform)[:6], self.width, self.height)


def crs_to_string(crs: CRS) -> str:
    """``'EPSG:32632'`` when the CRS has an EPSG code, else its WKT."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def grid_of(crs: CRS, transform: Affine, width: int, height: int) -> TileGrid:
    """The grid of a raster with this geometry. A rotated (not north-up) geotransform
    gets the north-up grid covering the raster, with the raster's pixel size, so every
    window stays an axis-aligned rectangle; the raster itself is then read through a
    WarpedVRT like any file off the grid (:func:`file_matches_grid`)."""
    crs = CRS.from_user_input(crs)
    if transform.b == 0 and transform.d == 0:
        return TileGrid(crs, transform, int(width), int(height))
    corners = [transform * (col, row) for col in (0, width) for row in (0, height)]
    xs, ys = zip(*corners)
    step = math.hypot(transform.a, transform.d)  # ground size of one column step
    left, top = min(xs), max(ys)
    cols = max(1, int(math.ceil((max(xs) - left) / step - 1e-6)))
    rows = max(1, int(math.ceil((top - min(ys)) / step - 1e-6)))
    return TileGrid(crs, Affine(step, 0.0, left, 0.0, -step, top), cols, rows)


def reproject_grid(grid: TileGrid, crs: Optional[str] = None,
                   res: Optional[float] = None) -> TileGrid:
    """`grid`'s extent on a grid in `crs` (default: same) with pixel size `res` (default:
    same).

    In the same CRS the new grid keeps `grid`'s origin (its top-left pixel corner), so a
    raster that shares the reference raster's pixel grid (Landsat's x = 694005 at 30 m)
    is still read pixel for pixel at its native size; only rasters off that grid are
    resampled. In another CRS there is no native grid to keep, and the origin snaps to
    multiples of `res` so tiles of one zone share pixel edges."""
    dst_crs = CRS.from_user_input(crs) if crs else grid.crs
    if dst_crs == grid.crs and (res is None or math.isclose(res, grid.res[0])):
        return grid
    step = float(res) if res else grid.res[0]
    if dst_crs == grid.crs:
        left, bottom, right, top = grid.bounds
    else:
        left, bottom, right, top = transform_bounds(grid.crs, dst_crs, *grid.bounds,
                                                    densify_pts=21)
        left, top = math.floor(left / step) * step, math.ceil(top / step) * step
    width = max(1, int(math.ceil((right - left) / step - 1e-6)))
    height = max(1, int(math.ceil((top - bottom) / step - 1e-6)))
    return TileGrid(dst_crs, Affine(step, 0.0, left, 0.0, -step, top), width, height)


def file_overlaps_grid(crs: CRS, bounds: tuple[float, float, float, float],
                       grid: TileGrid) -> bool:
    """Whether a file with `bounds` (in `crs`) covers any part of `grid`."""
    if crs != grid.crs:
        bounds = transform_bounds(crs, grid.crs, *bounds, densify_pts=21)
    left, bottom, right, top = grid.bounds
    return bounds[0] < right and bounds[2] > left and bounds[1] < top and bounds[3] > bottom


def file_matches_grid(crs: CRS, transform: Affine, grid: TileGrid, tol: float = 1e-6) -> bool:
    """True when the file can be read by plain windows: same CRS, same pixel size, no
    rotation and an origin that sits on a whole-pixel offset of the grid. Anything else
    goes through a WarpedVRT."""
    g = grid.transform
    if crs != grid.crs or transform.b != 0 or transform.d != 0:
        return False
    if not (math.isclose(transform.a, g.a, rel_tol=tol) and math.isclose(transform.e, g.e, rel_tol=tol)):
        return False
    dx, dy = (transform.c - g.c) / g.a, (transform.f - g.f) / g.e
    return abs(dx - round(dx)) < 1e-3 and abs(dy - round(dy)) < 1e-3


def window_latlon(grid: TileGrid, window: Window) -> tuple[float, float]:
    """(latitude, longitude) in degrees WGS84 of the window's centre."""
    x, y = grid.transform @ (window.col_off + window.width / 2, window.row_off + window.height / 2)
    lon, lat = warp_points(grid.crs, "EPSG:4326", [x], [y])
    return float(lat[0]), float(lon[0])
