"""Per-band mean / std of the stored values over valid pixels, computed by streaming.

``compute_band_stats`` walks every acquisition of each modality window by window on the
file's own grid (no warping) and merges per-window count / mean / M2 (Chan et al.'s
parallel update), so memory stays at one window whatever the data size. Valid pixels
are those the dataset would mark valid: not nodata, finite, and not cloud under SCL.

The JSON (``band_stats.json`` at the data root, read by ``SentinelTimeSeriesDataset``
when present)::

    {"version": 1, "s2": {"bands": ["B02", ...], "mean": [...], "std": [...],
                          "count": [...], "units": "stored values"}, "s1": {...}}
"""
from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import numpy as np
from rasterio.enums import Resampling

from interlace.core.engine.atomic_files import write_json_atomic

from .bands import SCL_CLOUD_CLASSES
from .chips import grid_windows
from .file_catalog import Catalog, ModalitySpec
from .grid import grid_of
from .raster_reader import GridWindowReader
from .time_series import ValueTransform, read_series

__all__ = ["BAND_STATS_FILE", "RunningBandStats", "compute_band_stats", "save_band_stats",
           "load_band_stats"]

BAND_STATS_FILE = "band_stats.json"


class RunningBandStats:
    """Streaming per-band count, mean and sum of squared deviations (float64)."""

    def __init__(self, num_bands: int) -> None:
        self.count = np.zeros(num_bands, np.float64)
        self.mean = np.zeros(num_bands, np.float64)
        self.m2 = np.zeros(num_bands, np.float64)

    def update(self, values: np.ndarray, valid: np.ndarray) -> None:
        """values: (C, H, W); valid: (H, W) bool."""
        for band in range(values.shape[0]):
            sample = values[band][valid].astype(np.float64)
            n = sample.size
            if n == 0:
                continue
            mean = sample.mean()
            m2 = ((sample - mean) ** 2).sum()
            total = self.count[band] + n
            delta = mean - self.mean[band]
            self.mean[band] += delta * n / total
            self.m2[band] += m2 + delta ** 2 * self.count[band] * n / total
            self.count[band] = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (numpy's default ``ddof=0``)."""
        return np.sqrt(self.m2 / np.maximum(self.count, 1))


def compute_band_stats(catalog: Catalog, specs: Sequence[ModalitySpec], window: int = 512,
                       cloud_classes: Optional[Sequence[int]] = SCL_CLOUD_CLASSES,
                       progress: Optional[Callable[[str], None]] = None) -> dict:
    """Statistics per modality in `specs` (those with bands) over every tile of `catalog`."""
    reader = GridWindowReader(cache_size=4)
    result: dict = {"version": 1}
    try:
        for spec in specs:
            if not spec.bands:
                continue
            stats = RunningBandStats(len(spec.bands))
            for tile in sorted(catalog.tiles):
                for acquisition in catalog.tiles[tile].get(spec.name, []):
                    if progress:
                        progress(f"{spec.name} {tile} {acquisition.date}")
                    first = acquisition.sources[spec.bands[0]][0]
                    grid = grid_of(first.crs, first.transform, first.width, first.height)
                    for win in grid_windows((0, 0, grid.width, grid.height), window):
                        series = read_series([acquisition], spec, grid, win, reader,
                                             ValueTransform(), Resampling.nearest, cloud_classes)
                        if series.dates:
                            stats.update(series.values[0], series.valid[0])
            if stats.count.sum() == 0:
                continue
            result[spec.name] = dict(bands=list(spec.bands), mean=stats.mean.tolist(),
                                     std=stats.std.tolist(), count=stats.count.astype(int).tolist(),
                                     units="stored values")
    finally:
        reader.close()
    return result


def save_band_stats(stats: dict, path: str) -> None:
    """Write `stats` as JSON atomically (temporary file in the same folder, then rename)."""
    write_json_atomic(path, stats, indent=2)


def load_band_stats(path: str, modality: str, bands: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 arrays for `bands` of `modality` from the JSON at `path`.

    Raises:
        ValueError: the file lacks the modality or a band, or a std is not positive
            (the message names the file).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            stats = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read band statistics ({error})") from None
    entry = stats.get(modality)
    if entry is None:
        raise ValueError(f"{path}: no statistics for modality '{modality}' "
                         f"(has {[k for k in stats if k != 'version']})")
    index = {b: i for i, b in enumerate(entry.get("bands", []))}
    missing = [b for b in bands if b not in index]
    if missing:
        raise ValueError(f"{path}: no statistics for {modality} band(s) {missing}")
    mean = np.array([entry["mean"][index[b]] for b in bands], np.float32)
    std = np.array([entry["std"][index[b]] for b in bands], np.float32)
    if not (std > 0).all():
        raise ValueError(f"{path}: {modality} has a non-positive std {std.tolist()}")
    return mean, std
