"""Chip samplers: random or gridded windows over a region of interest and a time window.

Both yield :class:`ChipQuery` objects, which ``SentinelTimeSeriesDataset[query]`` reads;
they are built by mmengine's runner with ``sampler=dict(type='RandomChipSampler',
size=64, length=500)`` (the runner passes ``dataset`` and ``seed``). Region and time
window are arguments, as in TorchGeo's ``RandomGeoSampler`` / ``GridGeoSampler``; sizes
and the ROI are in pixels of the tile grid or in ground units (``units='crs'``).

Relationship to the dataset's own index: ``GridChipSampler`` with the dataset's
``chip_size`` / ``chip_stride`` / ``roi`` yields exactly the chips that the integer
indices enumerate; the samplers add per-run choices (random positions, another ROI or
time window) without rebuilding the dataset.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler

from interlace.core.engine.registry import DATA_SAMPLERS

from .chips import ChipQuery, Units, grid_windows, roi_pixel_box, size_in_pixels

__all__ = ["RandomChipSampler", "GridChipSampler"]


class _ChipSamplerBase(Sampler):
    def __init__(self, dataset, size: float, units: Units = "pixels",
                 roi: Optional[Sequence[float]] = None, roi_units: Units = "pixels",
                 roi_crs: Optional[str] = None, time_range: Optional[tuple[str, str]] = None,
                 tiles: Optional[Sequence[str]] = None) -> None:
        if not dataset._fully_initialized:
            dataset.full_init()
        self.dataset, self.time_range = dataset, tuple(time_range) if time_range else None
        self.areas: list[tuple[str, tuple[int, int, int, int], int]] = []  # tile, box, size
        for tile, grid in sorted(dataset.grids.items()):
            if tiles is not None and tile not in tiles:
                continue
            box = roi_pixel_box(grid, roi, roi_units, roi_crs)
            if box is not None:
                self.areas.append((tile, box, size_in_pixels(size, units, grid)))
        if not self.areas:
            raise ValueError(f"{type(self).__name__}: the region of interest {roi} "
                             f"({roi_units}) covers no tile of the dataset")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by mmengine's runner each epoch (new random draws per epoch)."""
        self.epoch = epoch


@DATA_SAMPLERS.register_module()
class RandomChipSampler(_ChipSamplerBase):
    """`length` random `size` x `size` windows inside the ROI; tiles are drawn in
    proportion to their ROI area. A ROI smaller than `size` gives its own size.

    Args:
        dataset: a ``SentinelTimeSeriesDataset``.
        size: chip side in `units`.
        length: chips per epoch.
        seed: base seed (the runner passes one); draws differ per epoch.
    """

    def __init__(self, dataset, size: float, length: int = 100, units: Units = "pixels",
                 roi: Optional[Sequence[float]] = None, roi_units: Units = "pixels",
                 roi_crs: Optional[str] = None, time_range: Optional[tuple[str, str]] = None,
                 tiles: Optional[Sequence[str]] = None, seed: Optional[int] = None) -> None:
        super().__init__(dataset, size, units, roi, roi_units, roi_crs, time_range, tiles)
        self.length, self.seed = int(length), 0 if seed is None else int(seed)
        areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for _, b, _ in self.areas], float)
        self.weights = areas / areas.sum()

    def __iter__(self) -> Iterator[ChipQuery]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.length):
            tile, (c0, r0, c1, r1), size = self.areas[rng.choice(len(self.areas), p=self.weights)]
            width, height = min(size, c1 - c0), min(size, r1 - r0)
            col = int(rng.integers(c0, c1 - width + 1))
            row = int(rng.integers(r0, r1 - height + 1))
            yield ChipQuery(tile, (col, row, width, height), self.time_range)

    def __len__(self) -> int:
        return self.length


@DATA_SAMPLERS.register_module()
class GridChipSampler(_ChipSamplerBase):
    """Every window of a grid with `stride` (default `size`: no overlap; smaller:
    overlapping) covering the ROI of each tile, row-major, tiles in sorted order.
    The last row and column end flush with the ROI edge."""

    def __init__(self, dataset, size: float, stride: Optional[float] = None,
                 units: Units = "pixels", roi: Optional[Sequence[float]] = None,
                 roi_units: Units = "pixels", roi_crs: Optional[str] = None,
                 time_range: Optional[tuple[str, str]] = None,
                 tiles: Optional[Sequence[str]] = None, seed: Optional[int] = None) -> None:
        super().__init__(dataset, size, units, roi, roi_units, roi_crs, time_range, tiles)
        self.queries: list[ChipQuery] = []
        for tile, box, size_px in self.areas:
            stride_px = size_in_pixels(stride, units, dataset.grids[tile]) if stride else size_px
            for window in grid_windows(box, size_px, stride_px):
                self.queries.append(ChipQuery(tile, (int(window.col_off), int(window.row_off),
                                                     int(window.width), int(window.height)),
                                              self.time_range))

    def __iter__(self) -> Iterator[ChipQuery]:
        return iter(self.queries)

    def __len__(self) -> int:
        return len(self.queries)
