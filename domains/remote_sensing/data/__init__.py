"""Remote-sensing data: Sentinel-1/2 time series on GeoTIFFs (SkySense inputs).

Importing this package registers ``SentinelTimeSeriesDataset`` in ``DATASETS``,
``RandomChipSampler`` / ``GridChipSampler`` in ``DATA_SAMPLERS``, the collate function
``interlace.collate_time_series`` in ``FUNCTIONS`` and ``SceneWindowReader`` in
``INFERENCE_IO`` (scope ``interlace``).
"""
from .band_stats import (BAND_STATS_FILE, RunningBandStats, compute_band_stats,
                         load_band_stats, save_band_stats)
from .bands import (LABEL_IGNORE, S1_BANDS, S1_NODATA, S2_BANDS, S2_NODATA, S2_RGB_BANDS,
                    S2_SCALE, SCL_BAND, SCL_CLOUD_CLASSES, DateParseError, day_of_year,
                    parse_date)
from .chips import ChipQuery, grid_windows, roi_pixel_box
from .collate import collate_time_series
from .file_catalog import Acquisition, Catalog, ModalitySpec, RasterFile, build_catalog
from .grid import TileGrid, crs_to_string, reproject_grid
from .landcover import LANDCOVER_CLASSES, LANDCOVER_PALETTE, colormap_of
from .layouts import LAYOUTS
from .raster_reader import GridWindowReader, RasterReadError
from .samplers import GridChipSampler, RandomChipSampler
from .scene_reader import SceneWindowReader
from .sentinel_dataset import DEFAULT_MODALITIES, LabelClassError, SentinelTimeSeriesDataset
from .synthetic import make_synthetic_s1s2
from .transforms import CloudyDateMasking, RandomFlipRotate, SingleDateView
from .vector_labels import VectorLabels

__all__ = [
    "BAND_STATS_FILE", "RunningBandStats", "compute_band_stats", "load_band_stats",
    "save_band_stats", "LABEL_IGNORE", "S1_BANDS", "S1_NODATA", "S2_BANDS", "S2_NODATA",
    "S2_RGB_BANDS", "S2_SCALE", "SCL_BAND", "SCL_CLOUD_CLASSES", "DateParseError",
    "day_of_year", "parse_date", "ChipQuery", "grid_windows", "roi_pixel_box",
    "collate_time_series", "Acquisition", "Catalog", "ModalitySpec", "RasterFile",
    "build_catalog", "TileGrid", "crs_to_string", "reproject_grid", "LANDCOVER_CLASSES",
    "LANDCOVER_PALETTE", "colormap_of", "GridWindowReader", "RasterReadError",
    "GridChipSampler", "RandomChipSampler", "SceneWindowReader", "DEFAULT_MODALITIES",
    "LabelClassError", "SentinelTimeSeriesDataset", "make_synthetic_s1s2", "LAYOUTS",
    "VectorLabels", "CloudyDateMasking", "RandomFlipRotate", "SingleDateView",
]
