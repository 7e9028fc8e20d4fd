"""Sentinel-2 L2A SAFE products as downloaded: reflectance offsets from their metadata.

A product unpacks to::

    S2A_MSIL2A_20210315T103021_N0300_R108_T32TNR_20210315T134010.SAFE/
        MTD_MSIL2A.xml
        GRANULE/L2A_T32TNR_A029900_20210315T103021/IMG_DATA/
            R10m/T32TNR_20210315T103021_B02_10m.jp2   B02 B03 B04 B08 (+ AOT WVP TCI)
            R20m/T32TNR_20210315T103021_B05_20m.jp2   B05 B06 B07 B8A B11 B12 SCL (+ 20 m copies)
            R60m/...                                  B01 B09 (+ 60 m copies)

The modality layout that reads it (date and tile from the product name, each band at its
finest resolution, SCL at 20 m) is ``LAYOUTS['s2_l2a_safe']`` in :mod:`.layouts`; it reads
unpacked products and the downloaded ``.zip`` archives alike (through ``/vsizip/``).

From processing baseline 04.00 (products from 25 January 2022 on) the stored digital
numbers carry an offset: reflectance = (DN + BOA_ADD_OFFSET) / 10000, with
BOA_ADD_OFFSET = -1000 given per band in ``MTD_MSIL2A.xml``. :func:`boa_offset` reads it
so these products line up with older ones; DN 0 stays no data.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from typing import Optional

__all__ = ["S2_PHYSICAL_BANDS", "BASELINE_OFFSET", "safe_product_dir", "product_baseline",
           "read_boa_offsets", "boa_offset"]

logger = logging.getLogger(__name__)

# band_id of the SAFE metadata -> band name (the 13 physical bands in order).
S2_PHYSICAL_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08",
                                      "B8A", "B09", "B10", "B11", "B12")
BASELINE_OFFSET = -1000.0   # the offset of baseline 04.00 and later, per the product spec
_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")
_VSIZIP = "/vsizip/"
_IN_ZIP = re.compile(r"^/vsizip/(.+?\.zip)/(.+)$", re.IGNORECASE)


def safe_product_dir(path: str) -> Optional[str]:
    """The ``*.SAFE`` folder holding `path` (also inside a ``/vsizip/`` path), or None."""
    current = os.path.dirname(path if path.startswith(_VSIZIP) else os.path.abspath(path))
    while current and current != os.path.dirname(current):
        if current.upper().endswith(".SAFE"):
            return current
        current = os.path.dirname(current)
    return None


def product_baseline(product_dir: str) -> Optional[tuple[int, int]]:
    """(major, minor) processing baseline from the product name (``_N0400_`` -> (4, 0))."""
    match = _BASELINE.search(os.path.basename(product_dir))
    return (int(match.group(1)), int(match.group(2))) if match else None


@functools.lru_cache(maxsize=256)
def read_boa_offsets(product_dir: str) -> dict[str, float]:
    """Band name -> BOA_ADD_OFFSET from ``MTD_MSIL2A.xml``; {} when the product has none
    (baseline before 04.00). A baseline >= 04.00 product without readable metadata gets
    the documented -1000 for every band, with a warning naming the product."""
    baseline = product_baseline(product_dir)
    try:
        root = ElementTree.fromstring(_read_metadata(product_dir))
    except (OSError, KeyError, zipfile.BadZipFile, ElementTree.ParseError) as error:
        if baseline is not None and baseline >= (4, 0):
            logger.warning("remote sensing data: %s: cannot read MTD_MSIL2A.xml (%s); "
                           "baseline %02d.%02d, so the documented BOA_ADD_OFFSET %g is used",
                           product_dir, error, *baseline, BASELINE_OFFSET)
            return {band: BASELINE_OFFSET for band in S2_PHYSICAL_BANDS}
        return {}
    offsets = {}
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "BOA_ADD_OFFSET":
            band_id = int(element.get("band_id", "-1"))
            if 0 <= band_id < len(S2_PHYSICAL_BANDS):
                offsets[S2_PHYSICAL_BANDS[band_id]] = float(element.text)
    return offsets


def _read_metadata(product_dir: str) -> bytes:
    """``MTD_MSIL2A.xml`` of an unpacked product or of one inside a zip archive."""
    inside = _IN_ZIP.match(product_dir)
    if inside:
        with zipfile.ZipFile(inside.group(1)) as archive:
            return archive.read(f"{inside.group(2)}/MTD_MSIL2A.xml")
    with open(os.path.join(product_dir, "MTD_MSIL2A.xml"), "rb") as handle:
        return handle.read()


def boa_offset(path: str, band: str) -> float:
    """The offset added to the stored values of `band` read from `path` (0 outside a
    SAFE product, for SCL and for products without offsets)."""
    product = safe_product_dir(path)
    return read_boa_offsets(product).get(band, 0.0) if product else 0.0
