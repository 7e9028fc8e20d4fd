"""Band names, value conventions and dates of the Sentinel-1/2 rasters Interlace reads.

Band names follow TorchGeo (``B02`` ... ``B12``, ``B8A``, ``VV``, ``VH``). The S2 order is
SkySense's 10 bands (docs/methods/skysense.md): B02 B03 B04 B05 B06 B07 B08 B8A B11 B12.

Stored values (what the files hold):

- Sentinel-2 L2A: surface reflectance x 10000 as uint16, nodata 0. ``SCL`` is the
  scene-classification band (uint8); classes 3 (cloud shadow), 8 (cloud, medium
  probability), 9 (cloud, high probability) and 10 (thin cirrus) are clouds, 0 is no data.
- Sentinel-1 GRD: backscatter sigma0 in decibels as float32, nodata -9999 (non-finite
  values are treated as nodata too).
- Labels: uint8 class index, 255 = ignore / no data.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Optional

__all__ = ["S2_BANDS", "S2_RGB_BANDS", "S1_BANDS", "SCL_BAND", "SCL_CLOUD_CLASSES",
           "S2_SCALE", "S2_NODATA", "S1_NODATA", "LABEL_IGNORE", "DateParseError",
           "parse_date", "day_of_year"]

S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11",
                             "B12")
S2_RGB_BANDS: tuple[str, ...] = ("B04", "B03", "B02")
S1_BANDS: tuple[str, ...] = ("VV", "VH")
SCL_BAND = "SCL"
SCL_CLOUD_CLASSES: tuple[int, ...] = (3, 8, 9, 10)
S2_SCALE = 10000.0
S2_NODATA = 0
S1_NODATA = -9999.0
LABEL_IGNORE = 255

# Formats tried, in order, when a config gives none. Compact forms first: Sentinel file
# names carry 20210315 or 20210315T103021.
_DATE_FORMATS = ("%Y%m%dT%H%M%S", "%Y%m%d", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y%j")
_DIGITS = re.compile(r"^\d{7,8}$")


class DateParseError(ValueError):
    """A date in a file name or tag that no format understands."""


def parse_date(text: str, date_format: Optional[str] = None) -> _dt.date:
    """Parse an acquisition date from a file name group or a tag.

    Args:
        text: e.g. ``"20210315"``, ``"20210315T103021"``, ``"2021-03-15"``.
        date_format: a ``strptime`` format; when None the common formats are tried.

    Raises:
        DateParseError: nothing parses `text` (the caller adds the file name).
    """
    formats = (date_format,) if date_format else _DATE_FORMATS
    for fmt in formats:
        if fmt == "%Y%j" and not _DIGITS.match(text):
            continue
        try:
            return _dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise DateParseError(f"cannot parse date {text!r} with "
                         f"{'format ' + repr(date_format) if date_format else 'any of ' + ', '.join(formats)}")


def day_of_year(date: _dt.date) -> int:
    """1 ... 366; 0 is kept free for padding (see ``collate_time_series``)."""
    return date.timetuple().tm_yday
