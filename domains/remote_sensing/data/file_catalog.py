"""Find the GeoTIFFs of each tile by file-name pattern and group them into acquisitions.

A modality (``s2``, ``s1``, ``hr``, ``label``) is declared the TorchGeo way: a folder, a
``filename_glob`` and a ``filename_regex`` with named groups ``tile``, ``date`` and
``band``. A file whose regex has a ``band`` group holds that one band (TorchGeo's
``separate_files``); otherwise it is a multi-band file whose band order comes from its
band descriptions, else from the modality's ``band_order``. Dates come from the ``date``
group, else from the ``ACQUISITION_DATE`` tag.

One-band-per-file layouts whose file names do not carry the project's band names
(Landsat ``..._SR_B2.TIF``, a scene folder of COGs ``B02.tif`` or ``blue.tif``, a SAFE
product's ``..._B02_10m.jp2``) name the band with ``band_regex`` (a named group ``band``
searched in the file name) and ``band_map`` (that text -> project band name, TorchGeo
style); a file whose band text is not in the map is not a band of the modality and is
passed over. With ``match_path`` the ``filename_regex`` is searched in the path below the
modality folder, so tile and date can come from a scene folder's name. With
``search_zips`` the members of ``.zip`` archives below the folder are searched too and
read through GDAL's ``/vsizip/`` (a SAFE product as downloaded, not unpacked).

Only headers are read here (CRS, transform, size, descriptions), never pixels. Files
that cannot be used are skipped, each with a logged reason naming it, and listed in
:attr:`Catalog.skipped`: unreadable or truncated headers, no CRS, unparseable dates,
unknown band order, acquisitions missing a band.
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
import glob
import logging
import os
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional, Sequence

import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from affine import Affine

from .bands import DateParseError, parse_date
from .safe_products import boa_offset

__all__ = ["ModalitySpec", "RasterFile", "Acquisition", "Catalog", "build_catalog",
           "match_file", "DATE_TAGS"]

logger = logging.getLogger(__name__)

DATE_TAGS = ("ACQUISITION_DATE", "TIFFTAG_DATETIME")
VSIZIP = "/vsizip/"


@dataclass(frozen=True)
class ModalitySpec:
    """Which files make up one modality and which bands it yields.

    Args:
        name: ``'s2'``, ``'s1'``, ``'hr'`` or ``'label'``.
        folder: folder below the data root (searched recursively by `filename_glob`).
        filename_glob: e.g. ``'S2_*.tif'``.
        filename_regex: matched against the base name; named groups ``tile`` (required),
            ``date`` and ``band`` (optional).
        bands: the bands returned, in this order (empty for labels).
        mask_band: an extra band read for the validity mask (``'SCL'``), optional.
        date_format: ``strptime`` format of the ``date`` group; None tries the usual ones.
        band_order: band names of multi-band files that carry no band descriptions.
        dated: whether the modality is a time series (labels and hr need no date).
        band_regex: searched in the base name; its group ``band`` names the file's one
            band (instead of the ``band`` group of `filename_regex`).
        band_map: band text of the file name -> project band name, e.g. ``{'2': 'B02'}``
            or ``{'blue': 'B02'}``; files whose band text is missing are passed over.
        match_path: search `filename_regex` in the '/'-separated path below `folder`
            instead of matching it to the base name.
        layout: ``'s2_safe'`` for Sentinel-2 L2A SAFE products (see :mod:`.safe_products`:
            reflectance offsets from the product's metadata); None for plain files.
        search_zips: also search the members of ``.zip`` archives below `folder`.
    """

    name: str
    folder: str
    filename_glob: str
    filename_regex: str
    bands: tuple[str, ...] = ()
    mask_band: Optional[str] = None
    date_format: Optional[str] = None
    band_order: Optional[tuple[str, ...]] = None
    dated: bool = True
    band_regex: Optional[str] = None
    band_map: Optional[dict[str, str]] = field(default=None, hash=False)
    match_path: bool = False
    layout: Optional[str] = None
    search_zips: bool = False


@dataclass
class RasterFile:
    """Header of one GeoTIFF: where it is and which 1-based band index holds which band."""

    path: str
    tile: str
    date: Optional[_dt.date]
    band_index: dict[str, int]
    crs: CRS
    transform: Affine
    width: int
    height: int
    nodata: Optional[float]
    dtype: str
    offset: float = 0.0  # added to the stored values of valid pixels (SAFE BOA_ADD_OFFSET)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the file's CRS."""
        from rasterio.transform import array_bounds
        return array_bounds(self.height, self.width, self.transform)  # (west, south, east, north)


@dataclass
class Acquisition:
    """One date of one modality of one tile: where each band is read from."""

    tile: str
    date: Optional[_dt.date]
    sources: dict[str, tuple[RasterFile, int]]  # band -> (file, 1-based index)

    @property
    def files(self) -> list[RasterFile]:
        unique: dict[str, RasterFile] = {}
        for raster, _ in self.sources.values():
            unique.setdefault(raster.path, raster)
        return list(unique.values())


@dataclass
class Catalog:
    """tile -> modality -> acquisitions (sorted by date), plus what was skipped and why."""

    tiles: dict[str, dict[str, list[Acquisition]]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))
        logger.warning("remote sensing data: skipped %s: %s", path, reason)


def _read_header(path: str, match: re.Match, spec: ModalitySpec,
                 catalog: Catalog) -> Optional[RasterFile]:
    """Open `path` for its header only; None (and a logged skip) when it is unusable."""
    try:
        with rasterio.open(path) as src:
            crs, transform = src.crs, src.transform
            width, height, count = src.width, src.height, src.count
            nodata, dtype = src.nodata, src.dtypes[0]
            descriptions, tags = src.descriptions, src.tags()
    except (RasterioIOError, OSError, ValueError) as error:
        catalog.skip(path, f"not a readable GeoTIFF ({str(error).splitlines()[0]})")
        return None
    if crs is None:
        catalog.skip(path, "has no CRS; georeference it (e.g. gdal_edit.py -a_srs EPSG:32632)")
        return None
    if transform == Affine.identity():
        catalog.skip(path, "has no geotransform")
        return None
    groups = match.groupdict()
    date = None
    date_text = groups.get("date") or next((tags[t] for t in DATE_TAGS if t in tags), None)
    if spec.dated:
        if date_text is None:
            catalog.skip(path, "no date in the file name (regex group 'date') nor in the "
                               f"tags {DATE_TAGS}")
            return None
        try:
            date = parse_date(date_text, spec.date_format if groups.get("date") else None)
        except DateParseError as error:
            catalog.skip(path, str(error))
            return None
    band = _band_name(path, spec, groups)
    if band:
        band_index = {band: 1}
    elif spec.name == "label":
        band_index = {"label": 1}
    else:
        names = [d for d in descriptions if d]
        if len(names) == count and len(set(names)) == count:
            band_index = {name: i + 1 for i, name in enumerate(names)}
        elif spec.band_order and len(spec.band_order) <= count:
            band_index = {name: i + 1 for i, name in enumerate(spec.band_order)}
        elif spec.name == "hr":
            band_index = {f"band{i + 1}": i + 1 for i in range(count)}
        else:
            catalog.skip(path, f"{count} bands without band descriptions and no band_order "
                               f"configured for '{spec.name}'; cannot tell which band is which")
            return None
    offset = 0.0
    if spec.layout == "s2_safe" and band:
        # SAFE JP2s declare no nodata; the product spec reserves DN 0 for it.
        offset = boa_offset(path, band)
        nodata = 0 if nodata is None else nodata
    return RasterFile(path, groups["tile"], date, band_index, crs, transform, width, height,
                      nodata, dtype, offset)


def _band_name(path: str, spec: ModalitySpec, groups: dict) -> Optional[str]:
    """The project band name of a one-band file, or None for a multi-band file."""
    if spec.band_regex:
        match = re.search(spec.band_regex, os.path.basename(path))
        band = match.group("band") if match else None
    else:
        band = groups.get("band")
    if band and spec.band_map is not None:
        return spec.band_map.get(band)
    return band


def match_file(spec: ModalitySpec, path: str, root: Optional[str] = None) -> Optional[re.Match]:
    """`spec.filename_regex` on `path`: matched to the base name, or with ``match_path``
    searched in the path below ``root/folder`` (the whole path when `root` is None).
    With ``band_regex`` + ``band_map`` a file whose band text is not in the map (a QA
    layer, a band at another resolution) does not match."""
    if spec.match_path:
        folder = os.path.join(root, spec.folder) if root is not None else None
        real = path[len(VSIZIP):] if path.startswith(VSIZIP) else path
        text = os.path.relpath(real, folder) if folder else os.path.abspath(real)
        match = re.search(spec.filename_regex, text.replace(os.sep, "/"))
    else:
        match = re.match(spec.filename_regex, os.path.basename(path))
    if match is None:
        return None
    if (spec.band_regex or spec.band_map is not None) and _band_name(
            path, spec, match.groupdict()) is None:
        return None
    return match


def _zip_members(root: str, spec: ModalitySpec, catalog: Catalog) -> list[str]:
    """``/vsizip/`` paths of the members of archives below the folder that match the glob."""
    paths = []
    pattern = os.path.join(root, spec.folder, "**", "*.zip")
    for archive in sorted(glob.glob(pattern, recursive=True)):
        try:
            with zipfile.ZipFile(archive) as handle:
                names = handle.namelist()
        except (OSError, zipfile.BadZipFile) as error:
            catalog.skip(archive, f"not a readable zip archive ({error})")
            continue
        paths += [f"{VSIZIP}{os.path.abspath(archive)}/{name}" for name in sorted(names)
                  if fnmatch.fnmatch(name.rsplit("/", 1)[-1], spec.filename_glob)]
    return paths


def _find(root: str, spec: ModalitySpec, catalog: Catalog) -> list[tuple[str, re.Match]]:
    pattern = os.path.join(root, spec.folder, "**", spec.filename_glob)
    paths = [p for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(p)]
    if spec.search_zips:
        paths += _zip_members(root, spec, catalog)
    found = []
    for path in paths:
        match = match_file(spec, path, root)
        if match:
            found.append((path, match))
    return found


def build_catalog(root: str, specs: Sequence[ModalitySpec]) -> Catalog:
    """Scan `root` for every modality of `specs`; see the module docstring."""
    catalog = Catalog()
    for spec in specs:
        if "tile" not in re.compile(spec.filename_regex).groupindex:
            raise ValueError(f"filename_regex of '{spec.name}' needs a named group 'tile': "
                             f"{spec.filename_regex!r}")
        if spec.band_regex and "band" not in re.compile(spec.band_regex).groupindex:
            raise ValueError(f"band_regex of '{spec.name}' needs a named group 'band': "
                             f"{spec.band_regex!r}")
        grouped: dict[tuple[str, Optional[_dt.date]], dict[str, tuple[RasterFile, int]]]
        grouped = defaultdict(dict)
        for path, match in _find(root, spec, catalog):
            raster = _read_header(path, match, spec, catalog)
            if raster is None:
                continue
            sources = grouped[(raster.tile, raster.date)]
            for band, index in raster.band_index.items():
                if band in sources:
                    catalog.skip(path, f"band {band} of tile {raster.tile} on {raster.date} "
                                       f"is already read from {sources[band][0].path}")
                    continue
                sources[band] = (raster, index)
        wanted = list(spec.bands) or (["label"] if spec.name == "label" else [])
        for (tile, date), sources in sorted(grouped.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            missing = [b for b in wanted if b not in sources]
            if missing:
                paths = sorted({r.path for r, _ in sources.values()})
                for path in paths:
                    catalog.skip(path, f"{spec.name} of tile {tile} on {date} lacks band(s) "
                                       f"{missing}; the date is left out")
                continue
            catalog.tiles.setdefault(tile, {}).setdefault(spec.name, []).append(
                Acquisition(tile, date, sources))
    return catalog
