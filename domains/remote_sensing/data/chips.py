"""Chips: a tile plus a pixel window (and optionally a time window), and how to lay them out.

A :class:`ChipQuery` is what the chip samplers yield and what
``SentinelTimeSeriesDataset[query]`` reads. The dataset's own index (plain integers, for
mmengine's ``DefaultSampler``) is the same thing enumerated in advance: every tile's
region of interest covered by :func:`grid_windows`.

A region of interest (ROI) is given either in pixels of the tile grid,
``(col_off, row_off, width, height)``, or in ground units, ``(left, bottom, right, top)``
in ``roi_crs`` (default: the tile's CRS); sizes likewise in pixels or ground units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from .grid import TileGrid

__all__ = ["ChipQuery", "Units", "grid_windows", "roi_pixel_box", "size_in_pixels"]

Units = Literal["pixels", "crs"]


@dataclass(frozen=True)
class ChipQuery:
    """One chip to read: tile id, window ``(col_off, row_off, width, height)`` on the tile
    grid, and an optional ``(start, end)`` ISO date range (inclusive) for the series."""

    tile: str
    window: tuple[int, int, int, int]
    time_range: Optional[tuple[str, str]] = None

    def as_window(self) -> Window:
        return Window(*self.window)


def size_in_pixels(size: float, units: Units, grid: TileGrid) -> int:
    """A chip size in pixels of `grid` (ground units are divided by the pixel size)."""
    if units == "pixels":
        return int(size)
    if units == "crs":
        return max(1, int(round(size / grid.res[0])))
    raise ValueError(f"units must be 'pixels' or 'crs', not {units!r}")


def roi_pixel_box(grid: TileGrid, roi: Optional[Sequence[float]], units: Units = "pixels",
                  roi_crs: Optional[str] = None) -> Optional[tuple[int, int, int, int]]:
    """The ROI as ``(col0, row0, col1, row1)`` pixels of `grid` (end exclusive), clipped to
    the grid; None when the ROI misses the grid. ``roi=None`` is the whole grid."""
    if roi is None:
        box = (0, 0, grid.width, grid.height)
    elif units == "pixels":
        col, row, width, height = (int(v) for v in roi)
        box = (col, row, col + width, row + height)
    elif units == "crs":
        left, bottom, right, top = roi
        if roi_crs is not None and CRS.from_user_input(roi_crs) != grid.crs:
            left, bottom, right, top = transform_bounds(roi_crs, grid.crs, left, bottom, right,
                                                        top, densify_pts=21)
        inverse = ~grid.transform
        c0, r0 = inverse @ (left, top)
        c1, r1 = inverse @ (right, bottom)
        # Only whole pixels inside the ROI count.
        box = (math.ceil(c0 - 1e-6), math.ceil(r0 - 1e-6), math.floor(c1 + 1e-6),
               math.floor(r1 + 1e-6))
    else:
        raise ValueError(f"roi units must be 'pixels' or 'crs', not {units!r}")
    col0, row0 = max(box[0], 0), max(box[1], 0)
    col1, row1 = min(box[2], grid.width), min(box[3], grid.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return col0, row0, col1, row1


def _starts(begin: int, end: int, size: int, stride: int) -> list[int]:
    """Window starts covering [begin, end): a regular stride plus one flush with the end."""
    if end - begin <= size:
        return [begin]
    starts = list(range(begin, end - size + 1, stride))
    if starts[-1] + size < end:
        starts.append(end - size)
    return starts


def grid_windows(box: tuple[int, int, int, int], size: int, stride: Optional[int] = None
                 ) -> list[Window]:
    """Windows of `size` x `size` pixels with `stride` (default `size`: no overlap) covering
    `box` = (col0, row0, col1, row1), in row-major order. The last row/column is moved
    back to end at the box edge, so every window lies inside the box; a box smaller than
    `size` yields one window of the box's own size."""
    stride = stride or size
    if size < 1 or stride < 1:
        raise ValueError(f"chip size and stride must be positive (got {size}, {stride})")
    col0, row0, col1, row1 = box
    height, width = min(size, row1 - row0), min(size, col1 - col0)
    return [Window(c, r, width, height) for r in _starts(row0, row1, size, stride)
            for c in _starts(col0, col1, size, stride)]
