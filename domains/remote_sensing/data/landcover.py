"""The land-cover legend of the synthetic set (and the dataset's default metainfo).

Classes differ in seasonal curve and SAR signature (see :mod:`.synthetic`); the two crop
types share their spectrum outside the growing season and differ in green-up date, so
only the time series tells them apart.
"""
from __future__ import annotations

__all__ = ["LANDCOVER_CLASSES", "LANDCOVER_PALETTE", "colormap_of"]

LANDCOVER_CLASSES: tuple[str, ...] = ("water", "urban", "bare", "forest", "crop_early",
                                      "crop_late")
LANDCOVER_PALETTE: tuple[tuple[int, int, int], ...] = (
    (30, 90, 200), (200, 40, 40), (190, 170, 120), (20, 110, 40), (150, 210, 60),
    (240, 200, 30))


def colormap_of(palette) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table ``{class: (r, g, b, 255)}`` from an RGB palette."""
    return {i: (int(r), int(g), int(b), 255) for i, (r, g, b) in enumerate(palette)}
