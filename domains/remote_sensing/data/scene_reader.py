"""``SceneWindowReader``: a whole tile as overlapping windows, for ``tools/infer.py``.

An input path is any raster of a tile that the dataset's patterns recognise (e.g. its
label file or one S2 date); the reader finds the tile's files under ``data_root`` with
a :class:`SentinelTimeSeriesDataset` and yields ``(window, batch)`` pairs in row-major
order, each batch being ``collate_time_series`` of one chip, so memory follows the window
size, not the scene size. It implements the engine's streaming protocol
(:class:`~interlace.core.engine.batch_inference.StreamingInferenceReader`):
``describe(path)`` gives the tile grid (size, CRS, transform, nodata) that the writer
(``GeoTiffMapWriter.write_stream``) lays the blended map out on.

Each window's data sample also carries ``input_valid`` (h, w) bool: True where some S2
or S1 date has a valid (not nodata, not cloud) pixel. The writer marks the other pixels
as nodata instead of guessing a class there.

``read(path)`` (the plain :class:`InferenceReader` method) returns the whole tile as one
chip and refuses tiles larger than ``max_pixels``; the engine only uses it with writers
that cannot stream.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Optional

import rasterio
import torch
from rasterio.windows import Window

from interlace.core.engine.batch_inference import StreamingInferenceReader
from interlace.core.engine.registry import INFERENCE_IO

from .bands import LABEL_IGNORE
from .chips import ChipQuery, grid_windows
from .collate import collate_time_series
from .file_catalog import match_file
from .grid import crs_to_string
from .sentinel_dataset import SentinelTimeSeriesDataset

__all__ = ["SceneWindowReader"]


def _input_valid(batch: dict) -> torch.Tensor:
    """(H, W) bool of a one-chip batch: any valid S2 or S1 observation over time."""
    inputs = batch["inputs"]
    valid = torch.zeros(inputs["s2_valid"].shape[-2:], dtype=torch.bool)
    for name in ("s2_valid", "s1_valid"):
        if name in inputs and inputs[name].numel():
            valid |= inputs[name][0].any(dim=0)
    return valid


@INFERENCE_IO.register_module()
class SceneWindowReader(StreamingInferenceReader):
    """Args:
        data_root: data set root (layout of ``SentinelTimeSeriesDataset``); None takes
            each input's grandparent folder (``ROOT/<modality folder>/<file>``), so one
            config serves any data set laid out that way.
        window: window side in pixels; overlap: pixels shared by neighbouring windows.
        max_pixels: largest tile ``read`` returns in one piece.
        dataset: extra ``SentinelTimeSeriesDataset`` arguments (modalities, crs, res, ...).
        gdal_cache_mb: bound of GDAL's raster block cache while windows are read (None
            leaves GDAL's default, 5 % of RAM: the cache then keeps every block of a large
            scene it reads until it reaches that size, so memory grows with the scene).
    """

    def __init__(self, data_root: Optional[str] = None, window: int = 256, overlap: int = 32,
                 max_pixels: int = 1024 * 1024, dataset: Optional[dict] = None,
                 gdal_cache_mb: Optional[int] = 64) -> None:
        if not 0 <= overlap < window:
            raise ValueError(f"overlap must be in [0, window) (got {overlap}, {window})")
        self.window, self.overlap, self.max_pixels = int(window), int(overlap), int(max_pixels)
        self.gdal_cache_mb = gdal_cache_mb
        self.data_root = data_root
        self.dataset_args = dict(dataset or {})
        # One catalogue per data root: building it lists and opens every file once.
        self._datasets: dict[str, SentinelTimeSeriesDataset] = {}
        if data_root is not None:
            self._datasets[os.path.abspath(data_root)] = self._new_dataset(data_root)

    @property
    def dataset(self) -> SentinelTimeSeriesDataset:
        """The dataset of the configured ``data_root`` (None: of the last input seen)."""
        if not self._datasets:
            raise ValueError("SceneWindowReader has no data_root yet; give one or read a file")
        return next(reversed(self._datasets.values()))

    def _new_dataset(self, root: str) -> SentinelTimeSeriesDataset:
        return SentinelTimeSeriesDataset(root, test_mode=True, lazy_init=True, **self.dataset_args)

    def _dataset_for(self, path: str) -> SentinelTimeSeriesDataset:
        root = os.path.abspath(self.data_root if self.data_root is not None
                               else os.path.dirname(os.path.dirname(os.path.abspath(path))))
        if root not in self._datasets:
            self._datasets[root] = self._new_dataset(root)
        dataset = self._datasets[root]
        if not dataset._fully_initialized:
            dataset.full_init()
        return dataset

    def _locate(self, path: str) -> tuple[SentinelTimeSeriesDataset, str]:
        """The dataset holding `path`'s tile and the tile id (by the modalities' regexes)."""
        dataset = self._dataset_for(path)
        for spec in dataset.specs.values():
            match = match_file(spec, path, dataset.data_root)
            if match and match.group("tile") in dataset.grids:
                return dataset, match.group("tile")
        raise ValueError(f"{path}: no tile of {dataset.data_root} matches this file name "
                         f"(known tiles: {sorted(dataset.grids)})")

    def tile_of(self, path: str) -> str:
        """The tile id in `path`'s file name."""
        return self._locate(path)[1]

    def scene_shape(self, path: str) -> tuple[int, int]:
        dataset, tile = self._locate(path)
        grid = dataset.grids[tile]
        return grid.height, grid.width

    def describe(self, path: str) -> dict[str, Any]:
        """The tile grid: ``tile``, ``height``, ``width``, ``crs`` (str), ``transform``
        (6-tuple), ``nodata`` (the label raster's nodata if the tile has one, else 255)."""
        dataset, tile = self._locate(path)
        grid = dataset.grids[tile]
        labels = dataset.catalog.tiles[tile].get("label") if dataset.catalog else None
        nodata = labels[0].files[0].nodata if labels else None
        return dict(tile=tile, height=grid.height, width=grid.width,
                    crs=crs_to_string(grid.crs), transform=tuple(grid.transform)[:6],
                    nodata=int(nodata) if nodata is not None else LABEL_IGNORE)

    def _gdal_env(self) -> rasterio.Env:
        if self.gdal_cache_mb is None:
            return rasterio.Env()
        return rasterio.Env(GDAL_CACHEMAX=int(self.gdal_cache_mb) * 2 ** 20)

    def iter_windows(self, path: str) -> Iterator[tuple[Window, dict]]:
        """(window, batch of one chip) over the whole tile, row-major, overlapping;
        the chip's data sample has ``input_valid`` (h, w) bool."""
        dataset, tile = self._locate(path)
        grid = dataset.grids[tile]
        for window in grid_windows((0, 0, grid.width, grid.height), self.window,
                                   self.window - self.overlap):
            query = ChipQuery(tile, (int(window.col_off), int(window.row_off),
                                     int(window.width), int(window.height)))
            with self._gdal_env():
                batch = collate_time_series([dataset.read_chip(query)])
            batch["data_samples"][0].set_field(_input_valid(batch), "input_valid")
            yield window, batch

    def read(self, path: str) -> dict[str, Any]:
        dataset, tile = self._locate(path)
        grid = dataset.grids[tile]
        if grid.width * grid.height > self.max_pixels:
            raise ValueError(f"{path}: tile {tile} is {grid.width} x {grid.height} px, more "
                             f"than max_pixels={self.max_pixels}; read it window by window "
                             "with SceneWindowReader.iter_windows and SlidingWindowMosaic")
        return collate_time_series([dataset.read_chip(
            ChipQuery(tile, (0, 0, grid.width, grid.height)))])
