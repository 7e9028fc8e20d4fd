"""``SentinelTimeSeriesDataset``: Sentinel-2 + Sentinel-1 time series (and optional
high-resolution image) per chip of a tile, with land-cover labels, from GeoTIFFs.

Layout read by default (each modality's folder, glob and regex are configurable)::

    DATA_ROOT/s2/S2_<tile>_<YYYYMMDD>.tif            10 bands + SCL (band descriptions)
    DATA_ROOT/s2/S2_<tile>_<YYYYMMDD>_<band>.tif     or one file per band (B02 ... SCL)
    DATA_ROOT/s1/S1_<tile>_<YYYYMMDD>[_<VV|VH>].tif  VV, VH in dB
    DATA_ROOT/hr/HR_<tile>.tif                       optional high-resolution image
    DATA_ROOT/labels/LABEL_<tile>.tif                uint8 classes, 255 = ignore
    DATA_ROOT/band_stats.json                        optional (compute_band_stats.py in
                                                     tools/dataset_converters/)

Other layouts (SAFE products, scene folders of COGs, Landsat, polygon labels, S1 in
linear power) are set by options; see docs/data/remote_sensing.md and :mod:`.layouts`.

A sample (one chip: tile + window) is a dict::

    s2 (T2, 10, H, W) float32, s2_dates [ISO str], s2_doy (T2,) int64, s2_valid (T2, H, W) bool
    s1 (T1, 2, H, W) float32,  s1_dates, s1_doy, s1_valid           (values: see time_series)
    hr (C, Hh, Wh) float32 in [0, 1] for uint8 files (only when the tile has one)
    label (H, W) int64 (255 ignore), modality_flags (3,) bool (s2, s1, hr),
    latlon (2,) float32 (degrees WGS84, chip centre), crs (str), transform (6-tuple),
    tile, window (col_off, row_off, width, height)

Chips come from two places: integer indices enumerate every tile's ROI on a grid of
``chip_size`` with ``chip_stride`` (for mmengine's ``DefaultSampler``), and a
:class:`ChipQuery` (what ``RandomChipSampler`` / ``GridChipSampler`` yield) reads any
window and time range. Rasters whose CRS or resolution differ from the tile grid are
read through a WarpedVRT (logged once per file); see :mod:`.grid`.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from rasterio.enums import Resampling
from rasterio.windows import Window

from interlace.core.engine.registry import DATASETS

from .band_stats import BAND_STATS_FILE, load_band_stats
from .bands import LABEL_IGNORE, S1_BANDS, S2_BANDS, S2_SCALE, SCL_BAND, SCL_CLOUD_CLASSES, day_of_year
from .chips import ChipQuery, Units, grid_windows, roi_pixel_box, size_in_pixels
from .file_catalog import Acquisition, Catalog, ModalitySpec, build_catalog
from .grid import TileGrid, crs_to_string, file_overlaps_grid, grid_of, reproject_grid, window_latlon
from .landcover import LANDCOVER_CLASSES, LANDCOVER_PALETTE
from .layouts import layout
from .raster_reader import GridWindowReader, RasterReadError
from .time_series import ValueTransform, read_series
from .vector_labels import LabelClassError, VectorLabels

__all__ = ["SentinelTimeSeriesDataset", "LabelClassError", "DEFAULT_MODALITIES"]

logger = logging.getLogger(__name__)

_TILE, _DATE = r"(?P<tile>[0-9A-Za-z]+)", r"(?P<date>\d{8}(?:T\d{6})?)"
DEFAULT_MODALITIES: dict[str, dict] = dict(
    s2=dict(folder="s2", filename_glob="S2_*.tif", bands=S2_BANDS, mask_band=SCL_BAND,
            filename_regex=rf"^S2_{_TILE}_{_DATE}(?:_(?P<band>B\d[\dA]|SCL))?\.tif$"),
    s1=dict(folder="s1", filename_glob="S1_*.tif", bands=S1_BANDS,
            filename_regex=rf"^S1_{_TILE}_{_DATE}(?:_(?P<band>VV|VH))?\.tif$"),
    hr=dict(folder="hr", filename_glob="HR_*.tif", dated=False,
            filename_regex=rf"^HR_{_TILE}\.tif$"),
    label=dict(folder="labels", filename_glob="LABEL_*.tif", dated=False,
               filename_regex=rf"^LABEL_{_TILE}\.tif$"),
)
_RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear,
               "cubic": Resampling.cubic, "average": Resampling.average}


@DATASETS.register_module()
class SentinelTimeSeriesDataset(BaseDataset):
    """See the module docstring for layout and sample contents.

    Args:
        data_root: folder holding the modality folders.
        modalities: per-modality overrides of :data:`DEFAULT_MODALITIES` (fields of
            :class:`ModalitySpec`); ``dict(hr=None)`` drops a modality.
        chip_size, chip_stride: chip layout of the integer index, in `units`.
        units: ``'pixels'`` or ``'crs'`` (ground units of the tile grid).
        roi, roi_units, roi_crs: region of interest per tile (see :mod:`.chips`).
        time_range: ``(start, end)`` ISO dates (inclusive) kept for the series.
        tiles: keep only these tile ids.
        crs, res: common grid CRS / pixel size (default: each tile's label / first S2 file).
        band_stats: JSON of per-band statistics, ``'auto'`` (``band_stats.json`` at the
            root if present) or None (S2 as reflectance, S1 as ``s1_units``).
        s1_units: ``'db'`` or ``'linear'``: S1 values returned when no statistics are used.
        s1_file_units: what the S1 files hold, ``'db'`` (default) or ``'linear'`` power
            (RTC / GRD products in power: 10 * log10 gives dB; values <= 0 are no data).
        grid_reference: modality whose first file sets each tile's grid (default: label,
            else s2, else s1); with `res` the grid keeps that raster's pixel origin.
        label_vector: polygon labels instead of label rasters, e.g. ``dict(path=
            'labels/*.gpkg', attribute='class')`` (see :class:`.VectorLabels`; path
            relative to `data_root`).
        cloud_classes: SCL classes masked as invalid (None: mask band is binary).
        resampling: for reflectance / backscatter when warping (masks and labels always
            use nearest).
        skip_empty_chips: outside test mode, a chip with no valid S2/S1 pixel is skipped
            (logged) and mmengine draws another.
        cache_size: open-file cache of the reader.
        label_fraction, label_seed: keep a random share of the chips (at least one),
            drawn with `label_seed` (``numpy.random.default_rng``): a label-efficiency
            subset whose chips are labelled in full. 1.0 keeps every chip.
        cache_samples: keep every chip read in memory (before the pipeline), for small
            sets read many times (pipeline transforms never modify a sample in place).
    """

    METAINFO = dict(classes=LANDCOVER_CLASSES, palette=LANDCOVER_PALETTE)

    def __init__(self, data_root: str, *, modalities: Optional[dict[str, Optional[dict]]] = None,
                 chip_size: float = 64, chip_stride: Optional[float] = None,
                 units: Units = "pixels", roi: Optional[Sequence[float]] = None,
                 roi_units: Units = "pixels", roi_crs: Optional[str] = None,
                 time_range: Optional[tuple[str, str]] = None,
                 tiles: Optional[Sequence[str]] = None, crs: Optional[str] = None,
                 res: Optional[float] = None, band_stats: Optional[str] = "auto",
                 s1_units: str = "db", s1_file_units: str = "db",
                 grid_reference: Optional[str] = None,
                 label_vector: Optional[dict] = None, cloud_classes: Optional[Sequence[int]] = SCL_CLOUD_CLASSES,
                 resampling: str = "bilinear", hr_scale: Optional[float] = None,
                 skip_empty_chips: bool = True, cache_size: int = 32,
                 label_fraction: float = 1.0, label_seed: int = 0,
                 cache_samples: bool = False,
                 pipeline: Sequence[dict | Callable] = (), **kwargs: Any) -> None:
        for option, value in (("s1_units", s1_units), ("s1_file_units", s1_file_units)):
            if value not in ("db", "linear"):
                raise ValueError(f"{option} must be 'db' or 'linear', not {value!r}")
        if resampling not in _RESAMPLING:
            raise ValueError(f"resampling must be one of {list(_RESAMPLING)}")
        merged = {k: dict(v) for k, v in DEFAULT_MODALITIES.items()}
        for name, override in (modalities or {}).items():
            if override is None:
                merged.pop(name, None)
                continue
            if isinstance(override, str):   # a named layout (see .layouts)
                override = dict(preset=override)
            override = dict(override)
            if "preset" in override:
                merged[name] = {**layout(override.pop("preset")), **override}
            else:
                merged[name] = {**merged.get(name, {}), **override}
        if label_vector is not None:
            merged.pop("label", None)   # polygons replace label rasters
        self.specs = {name: ModalitySpec(name=name, **{k: tuple(v) if isinstance(v, list) else v
                                                        for k, v in cfg.items()})
                      for name, cfg in merged.items()}
        self.chip_size, self.chip_stride, self.units = chip_size, chip_stride, units
        self.roi, self.roi_units, self.roi_crs = roi, roi_units, roi_crs
        self.time_range, self.tile_filter = time_range, set(tiles) if tiles else None
        self.crs, self.res = crs, res
        self.band_stats_path = band_stats
        self.s1_units, self.cloud_classes = s1_units, cloud_classes
        self.s1_file_units, self.grid_reference = s1_file_units, grid_reference
        if grid_reference is not None and grid_reference not in self.specs:
            raise ValueError(f"grid_reference {grid_reference!r} is not a modality "
                             f"(modalities: {sorted(self.specs)})")
        self.label_vector_cfg = dict(label_vector) if label_vector is not None else None
        self.vector_labels: Optional[VectorLabels] = None
        self.resampling = _RESAMPLING[resampling]
        self.hr_scale, self.skip_empty_chips = hr_scale, skip_empty_chips
        if not 0.0 < label_fraction <= 1.0:
            raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}")
        self.label_fraction, self.label_seed = label_fraction, label_seed
        self._sample_cache: Optional[dict[int, Optional[dict]]] = {} if cache_samples else None
        self.reader = GridWindowReader(cache_size)
        self.catalog: Optional[Catalog] = None
        self.grids: dict[str, TileGrid] = {}
        self.value_transforms: dict[str, ValueTransform] = {}
        self.skipped: Counter = Counter()
        self._logged_failures: set[str] = set()
        super().__init__(data_root=data_root, pipeline=list(pipeline), **kwargs)

    # -- index ------------------------------------------------------------------------

    def _stats_path(self) -> Optional[str]:
        if self.band_stats_path == "auto":
            path = os.path.join(self.data_root, BAND_STATS_FILE)
            return path if os.path.isfile(path) else None
        return self.band_stats_path

    def _build_value_transforms(self) -> None:
        stats = self._stats_path()
        for name, scale in (("s2", 1.0 / S2_SCALE), ("s1", 1.0)):
            spec = self.specs.get(name)
            if spec is None:
                continue
            if stats:
                mean, std = load_band_stats(stats, name, spec.bands)
                self.value_transforms[name] = ValueTransform(mean=mean, std=std)
            else:
                file_linear = name == "s1" and self.s1_file_units == "linear"
                out_linear = name == "s1" and self.s1_units == "linear"
                self.value_transforms[name] = ValueTransform(
                    scale=scale, to_linear=not file_linear and out_linear,
                    to_db=file_linear and not out_linear)
            if name == "s1" and self.s1_file_units == "linear":
                self.value_transforms[name].positive = True
        if stats:
            logger.info("SentinelTimeSeriesDataset: values normalised with %s", stats)

    def _reference_grid(self, tile: str, entry: dict[str, list[Acquisition]]) -> Optional[TileGrid]:
        order = (self.grid_reference, "label", "s2", "s1") if self.grid_reference else (
            "label", "s2", "s1")
        for name in order:
            if entry.get(name):
                # One band per file can mix resolutions (SAFE: 10 m and 20 m): the finest
                # sets the grid, so no band is read below its native resolution.
                first = min(entry[name][0].files, key=lambda f: abs(f.transform.a))
                grid = grid_of(first.crs, first.transform, first.width, first.height)
                return reproject_grid(grid, self.crs, self.res)
        return None

    def _drop_non_overlapping(self, tile: str, entry: dict[str, list[Acquisition]],
                              grid: TileGrid) -> None:
        for name, acquisitions in entry.items():
            kept = []
            for acquisition in acquisitions:
                outside = [f for f in acquisition.files
                           if not file_overlaps_grid(f.crs, f.bounds, grid)]
                if outside:
                    for raster in outside:
                        self.catalog.skip(raster.path, f"does not overlap the grid of tile "
                                                       f"{tile} ({crs_to_string(grid.crs)}, "
                                                       f"bounds {tuple(round(b) for b in grid.bounds)})")
                    continue
                kept.append(acquisition)
            entry[name] = kept

    def load_data_list(self) -> list[dict]:
        self._build_value_transforms()
        if self.label_vector_cfg is not None:
            self.vector_labels = VectorLabels(classes=self.metainfo["classes"],
                                              root=self.data_root, **self.label_vector_cfg)
        self.catalog = build_catalog(self.data_root, list(self.specs.values()))
        data_list = []
        for tile in sorted(self.catalog.tiles):
            if self.tile_filter is not None and tile not in self.tile_filter:
                continue
            entry = self.catalog.tiles[tile]
            grid = self._reference_grid(tile, entry)
            if grid is None:
                continue
            self._drop_non_overlapping(tile, entry, grid)
            if not entry.get("s2") and not entry.get("s1"):
                logger.warning("SentinelTimeSeriesDataset: tile %s has no usable S2 or S1 "
                               "date; left out", tile)
                continue
            self.grids[tile] = grid
            box = roi_pixel_box(grid, self.roi, self.roi_units, self.roi_crs)
            if box is None:
                continue
            size = size_in_pixels(self.chip_size, self.units, grid)
            stride = size_in_pixels(self.chip_stride, self.units, grid) if self.chip_stride else size
            for window in grid_windows(box, size, stride):
                data_list.append(dict(tile=tile, window=(int(window.col_off), int(window.row_off),
                                                         int(window.width), int(window.height))))
        if not data_list:
            looked = "; ".join(f"{s.name}: {os.path.join(self.data_root, s.folder, s.filename_glob)}"
                               for s in self.specs.values())
            raise FileNotFoundError(f"SentinelTimeSeriesDataset: no chip under {self.data_root} "
                                    f"(tiles {sorted(self.catalog.tiles) or 'none'}, "
                                    f"{len(self.catalog.skipped)} files skipped; looked for "
                                    f"{looked})")
        if self.label_fraction < 1.0:
            count = max(1, round(self.label_fraction * len(data_list)))
            rng = np.random.default_rng(self.label_seed)
            data_list = [data_list[i] for i in
                         sorted(rng.choice(len(data_list), count, replace=False).tolist())]
        return data_list

    # -- reading ----------------------------------------------------------------------

    def __getitem__(self, idx: int | ChipQuery) -> Any:
        if isinstance(idx, ChipQuery):
            if not self._fully_initialized:
                self.full_init()
            sample = self.read_chip(idx)
            if sample is None:  # empty chip, training: draw an indexed chip instead
                return super().__getitem__(self._rand_another())
            return self.pipeline(sample)
        return super().__getitem__(idx)

    def prepare_data(self, idx: int) -> Any:
        if self._sample_cache is not None and idx in self._sample_cache:
            sample = self._sample_cache[idx]
        else:
            info = self.get_data_info(idx)
            sample = self.read_chip(ChipQuery(info["tile"], tuple(info["window"]),
                                              self.time_range))
            if self._sample_cache is not None:
                self._sample_cache[idx] = sample
        if sample is None:
            return None
        return self.pipeline(sample)

    def _in_time_range(self, acquisitions: list[Acquisition],
                       time_range: Optional[tuple[str, str]]) -> list[Acquisition]:
        if not time_range:
            return acquisitions
        start, end = time_range
        return [a for a in acquisitions if start <= a.date.isoformat() <= end]

    def _log_failures(self, failures: list[tuple[str, str]]) -> None:
        for path, message in failures:
            self.skipped["unreadable_date"] += 1
            if path not in self._logged_failures:
                self._logged_failures.add(path)
                logger.warning("SentinelTimeSeriesDataset: date left out: %s", message)

    def _read_label(self, tile: str, grid: TileGrid, window: Window) -> np.ndarray:
        if self.vector_labels is not None:
            return self.vector_labels.rasterize(grid, window)
        labels = self.catalog.tiles[tile].get("label") if self.catalog else None
        if not labels:
            return np.full((int(window.height), int(window.width)), LABEL_IGNORE, np.int64)
        raster = labels[0].files[0]
        label = self.reader.read(raster, [1], grid, window, Resampling.nearest,
                                 fill=LABEL_IGNORE)[0].astype(np.int64)
        if raster.nodata is not None and raster.nodata != LABEL_IGNORE:
            label[label == int(raster.nodata)] = LABEL_IGNORE
        num_classes = len(self.metainfo["classes"])
        bad = np.unique(label[(label >= num_classes) & (label != LABEL_IGNORE)])
        if bad.size:
            raise LabelClassError(f"{raster.path}: class value(s) {bad.tolist()} outside the "
                                  f"{num_classes} classes of the config "
                                  f"{list(self.metainfo['classes'])} (255 = ignore)")
        return label

    def _read_hr(self, tile: str, grid: TileGrid, window: Window) -> Optional[np.ndarray]:
        entry = self.catalog.tiles[tile].get("hr") if "hr" in self.specs else None
        if not entry:
            return None
        raster = entry[0].files[0]
        factor = max(1, int(round(grid.res[0] / abs(raster.transform.a))))
        hr_grid = reproject_grid(grid, res=grid.res[0] / factor)
        hr_window = Window(window.col_off * factor, window.row_off * factor,
                           window.width * factor, window.height * factor)
        indexes = sorted(raster.band_index.values())
        data = self.reader.read(raster, indexes, hr_grid, hr_window, self.resampling, fill=0)
        scale = self.hr_scale or (1 / 255 if data.dtype == np.uint8 else 1.0)
        return data.astype(np.float32) * np.float32(scale)

    def read_chip(self, query: ChipQuery) -> Optional[dict]:
        """Read one chip (see the module docstring); None when outside test mode the chip
        has no valid pixel and ``skip_empty_chips`` is set."""
        if query.tile not in self.grids:
            raise KeyError(f"unknown tile {query.tile!r}; known: {sorted(self.grids)}")
        grid, window = self.grids[query.tile], query.as_window()
        entry = self.catalog.tiles[query.tile]
        sample: dict[str, Any] = dict(tile=query.tile, window=tuple(int(v) for v in query.window))
        flags = []
        for name in ("s2", "s1"):
            spec = self.specs.get(name)
            acquisitions = self._in_time_range(entry.get(name, []), query.time_range) if spec else []
            series = read_series(acquisitions, spec or ModalitySpec(name, "", "", "", bands=
                                 S2_BANDS if name == "s2" else S1_BANDS), grid, window,
                                 self.reader, self.value_transforms.get(name, ValueTransform()),
                                 self.resampling, self.cloud_classes)
            self._log_failures(series.failures)
            sample[name] = torch.from_numpy(series.values)
            sample[f"{name}_valid"] = torch.from_numpy(series.valid)
            sample[f"{name}_dates"] = [d.isoformat() for d in series.dates]
            sample[f"{name}_doy"] = torch.tensor([day_of_year(d) for d in series.dates], dtype=torch.int64)
            flags.append(len(series.dates) > 0)
        try:
            hr = self._read_hr(query.tile, grid, window)
        except RasterReadError as error:
            self._log_failures([(str(error).split(":")[0], str(error))])
            hr = None
        if hr is not None:
            sample["hr"] = torch.from_numpy(hr)
        flags.append(hr is not None)
        sample["modality_flags"] = torch.tensor(flags, dtype=torch.bool)
        sample["label"] = torch.from_numpy(self._read_label(query.tile, grid, window))
        sample["crs"] = crs_to_string(grid.crs)
        sample["transform"] = tuple(grid.window_transform(window))[:6]
        sample["latlon"] = torch.tensor(window_latlon(grid, window), dtype=torch.float32)
        if not (sample["s2_valid"].any() or sample["s1_valid"].any()) and hr is None:
            self.skipped["empty_chip"] += 1
            logger.warning("SentinelTimeSeriesDataset: chip %s %s has no valid S2/S1 pixel "
                           "(all nodata or cloud)%s", query.tile, sample["window"],
                           "" if self.test_mode else "; skipped")
            if self.skip_empty_chips and not self.test_mode:
                return None
        return sample
