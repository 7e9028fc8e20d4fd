"""Read one modality's time series for one chip: values, validity mask, dates.

Values returned (document of the dataset's ``s2`` / ``s1`` outputs):

- S2: surface reflectance (stored uint16 / 10000), or ``(stored - mean) / std`` per band
  when band statistics are given (statistics are of the stored values, see
  ``tools/dataset_converters/compute_band_stats.py``).
- S1: backscatter in dB (``s1_units='db'``) or linear power (``'linear'``), converted
  from what the files hold (``s1_file_units``): dB -> linear as ``10 ** (dB / 10)``,
  linear -> dB as ``10 * log10(power)``; or ``(stored - mean) / std`` with statistics.
  In linear files, power <= 0 is no data.

Invalid pixels (nodata in any band, non-finite, or masked as cloud) are set to 0 and
marked False in the validity mask. A date whose file cannot be read is left out with a
logged reason (once per file).
"""
from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from .file_catalog import Acquisition, ModalitySpec
from .grid import TileGrid
from .raster_reader import GridWindowReader, RasterReadError

__all__ = ["SeriesRead", "ValueTransform", "read_series", "read_bands"]

logger = logging.getLogger(__name__)


@dataclass
class ValueTransform:
    """Stored values -> returned values: ``value * scale`` or ``(value - mean) / std``;
    ``to_linear`` turns dB into linear power first, ``to_db`` linear power into dB (S1
    without statistics). With ``positive`` stored values <= 0 become NaN, which
    :func:`read_series` marks invalid (zero power is the no-data border of S1 products)."""

    scale: float = 1.0
    mean: Optional[np.ndarray] = None   # (C,)
    std: Optional[np.ndarray] = None    # (C,)
    to_linear: bool = False
    to_db: bool = False
    positive: bool = False

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """values: (T, C, H, W) float32 -> same shape (NaN where not convertible)."""
        if self.positive:
            values = np.where(values > 0, values, np.float32(np.nan))
        if self.mean is not None:
            return (values - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        if self.to_linear:
            values = np.power(10.0, values / 10.0, dtype=np.float32)
        if self.to_db:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.float32(10.0) * np.log10(values)
        return values * np.float32(self.scale)


@dataclass
class SeriesRead:
    """values (T, C, H, W) float32, valid (T, H, W) bool, dates (T,) and read failures."""

    values: np.ndarray
    valid: np.ndarray
    dates: list[_dt.date]
    failures: list[tuple[str, str]] = field(default_factory=list)


def read_bands(acquisition: Acquisition, bands: Sequence[str], grid: TileGrid, window: Window,
               reader: GridWindowReader, resampling: Resampling
               ) -> tuple[np.ndarray, np.ndarray]:
    """Bands of one acquisition, one read per file. Returns (C, H, W) float32 values and
    the (H, W) mask of pixels that are valid in every band."""
    shape = (len(bands), int(window.height), int(window.width))
    values = np.zeros(shape, np.float32)
    valid = np.ones(shape[1:], bool)
    by_file: dict[str, list[tuple[int, int]]] = {}
    files = {}
    for position, band in enumerate(bands):
        raster, index = acquisition.sources[band]
        by_file.setdefault(raster.path, []).append((position, index))
        files[raster.path] = raster
    for path, pairs in by_file.items():
        raster = files[path]
        data = reader.read(raster, [i for _, i in pairs], grid, window, resampling)
        data = data.astype(np.float32, copy=False)
        ok = np.isfinite(data)
        if raster.nodata is not None and np.isfinite(raster.nodata):
            ok &= data != raster.nodata
        valid &= ok.all(axis=0)
        if raster.offset:
            data = data + np.float32(raster.offset)
        for k, (position, _) in enumerate(pairs):
            values[position] = data[k]
    return values, valid


def read_series(acquisitions: Sequence[Acquisition], spec: ModalitySpec, grid: TileGrid,
                window: Window, reader: GridWindowReader, transform: ValueTransform,
                resampling: Resampling = Resampling.bilinear,
                cloud_classes: Optional[Sequence[int]] = None) -> SeriesRead:
    """Read every acquisition of one modality over `window` (see module docstring).

    The mask band (``spec.mask_band``, e.g. SCL) is always read with nearest-neighbour
    resampling; with `cloud_classes` its pixels in those classes (and class 0, no data)
    are invalid, without them every non-zero mask pixel is invalid (a binary cloud mask).
    """
    stacks, masks, dates, failures = [], [], [], []
    for acquisition in acquisitions:
        try:
            values, valid = read_bands(acquisition, spec.bands, grid, window, reader, resampling)
            mask_band = spec.mask_band
            if mask_band and mask_band in acquisition.sources:
                mask, _ = read_bands(acquisition, [mask_band], grid, window, reader,
                                     Resampling.nearest)
                mask = mask[0]
                if cloud_classes is not None:
                    valid &= ~np.isin(mask, list(cloud_classes)) & (mask != 0)
                else:
                    valid &= mask == 0
        except RasterReadError as error:
            failures.append((acquisition.files[0].path, str(error)))
            continue
        stacks.append(values)
        masks.append(valid)
        dates.append(acquisition.date)
    height, width = int(window.height), int(window.width)
    if stacks:
        values = transform(np.stack(stacks)).astype(np.float32, copy=False)
        valid = np.stack(masks) & np.isfinite(values).all(axis=1)
        values[~np.broadcast_to(valid[:, None], values.shape)] = 0.0
    else:
        values = np.zeros((0, len(spec.bands), height, width), np.float32)
        valid = np.zeros((0, height, width), bool)
    return SeriesRead(values, valid, dates, failures)
