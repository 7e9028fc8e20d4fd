"""Two views of one chip for teacher-student pre-training: other dates, shifted crops.

SkySense (Sec. 3.2) contrasts a student view and a teacher view of the same place. Here
each view keeps a random subset of each stream's dates (the views see different
acquisitions of the same ground) and a square crop of the chip; the two crops are offset
by whole grid cells, so the grid cells of their overlap correspond *exactly* (cell (i, j)
of one view is cell (i + di, j + dj) of the other) and pixel-level contrast needs no
resampling. One pair of crop offsets is drawn per batch (every sample shares it, which
keeps the overlap the same size across the batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

__all__ = ["ViewPair", "ContrastiveViewSampler"]


@dataclass
class ViewPair:
    """The two views and where their overlap lies on each view's grid.

    ``student`` / ``teacher`` are encoder inputs (the preprocessor's dict, cropped and
    date-subsampled); ``*_overlap`` are (top, left) grid-cell offsets of the overlap in
    that view and ``overlap_size`` its (height, width) in cells.
    """

    student: dict[str, Any]
    teacher: dict[str, Any]
    student_overlap: tuple[int, int]
    teacher_overlap: tuple[int, int]
    overlap_size: tuple[int, int]


def _subset_dates(stream_tensors: dict[str, Tensor], day_of_year: Tensor, count: int,
                  generator: Optional[torch.Generator]) -> tuple[dict[str, Tensor], Tensor]:
    """Keep `count` dates per sample, real dates (doy > 0) before padding, in time order."""
    batch, dates = day_of_year.shape
    if count >= dates:
        return stream_tensors, day_of_year
    # Random scores, +1 for real dates: the top `count` are random real dates first.
    scores = torch.rand(batch, dates, generator=generator).to(day_of_year.device)
    scores = scores + (day_of_year > 0).float()
    chosen = scores.topk(count, dim=1).indices.sort(dim=1).values  # (B, count)
    picked = {}
    for key, tensor in stream_tensors.items():
        index = chosen.view(batch, count, *([1] * (tensor.dim() - 2))).expand(
            batch, count, *tensor.shape[2:])
        picked[key] = tensor.gather(1, index)
    return picked, day_of_year.gather(1, chosen)


class ContrastiveViewSampler:
    """Draw a (student, teacher) view pair from a batch of encoder inputs.

    Args:
        crop_size: side of each crop, in input pixels; a multiple of `cell_size`.
        cell_size: input pixels per grid cell of the encoder (its grid stride).
        min_overlap: minimum overlap side, in cells (>= 1).
        num_dates: dates kept per stream and view (None = all).
        seed: seed of the sampler's own generator (None = the global RNG).
    """

    def __init__(self, crop_size: int, cell_size: int, min_overlap: int = 2,
                 num_dates: Optional[int] = None, seed: Optional[int] = None) -> None:
        if crop_size % cell_size:
            raise ValueError(f"crop_size {crop_size} is not a multiple of cell_size {cell_size}")
        if not 1 <= min_overlap <= crop_size // cell_size:
            raise ValueError(f"min_overlap must be 1..{crop_size // cell_size} cells, "
                             f"got {min_overlap}")
        self.crop_size, self.cell_size = crop_size, cell_size
        self.min_overlap, self.num_dates = min_overlap, num_dates
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def _offsets(self, size: int) -> tuple[int, int]:
        """Cell offsets of the two crops along one axis of a chip of `size` pixels."""
        cells, crop = size // self.cell_size, self.crop_size // self.cell_size
        if cells < crop:
            raise ValueError(f"chip of {size} px is smaller than the crop ({self.crop_size} px)")
        first = self._randint(cells - crop + 1)
        max_shift = crop - self.min_overlap
        low, high = max(0, first - max_shift), min(cells - crop, first + max_shift)
        return first, low + self._randint(high - low + 1)

    def _view(self, inputs: dict[str, Any], top: int, left: int) -> dict[str, Any]:
        px_top, px_left, crop = top * self.cell_size, left * self.cell_size, self.crop_size
        rows, cols = slice(px_top, px_top + crop), slice(px_left, px_left + crop)
        view = dict(inputs, series={}, day_of_year={}, valid={})
        for name, images in inputs["series"].items():
            tensors = dict(series=images[..., rows, cols])
            if name in inputs.get("valid", {}):
                tensors["valid"] = inputs["valid"][name][..., rows, cols]
            if self.num_dates is not None:
                tensors, doy = _subset_dates(tensors, inputs["day_of_year"][name],
                                             self.num_dates, self.generator)
            else:
                doy = inputs["day_of_year"][name]
            view["series"][name], view["day_of_year"][name] = tensors["series"], doy
            if "valid" in tensors:
                view["valid"][name] = tensors["valid"]
        high_res = inputs.get("high_res")
        if high_res is not None:
            # The high-res image covers the same ground at `scale` times more pixels.
            reference = next(iter(inputs["series"].values())).shape[-1]
            scale = high_res.shape[-1] // reference
            if scale * reference != high_res.shape[-1]:
                raise ValueError(f"high-res width {high_res.shape[-1]} is not a multiple of the "
                                 f"series width {reference}; views need an integer scale")
            view["high_res"] = high_res[..., px_top * scale:(px_top + crop) * scale,
                                        px_left * scale:(px_left + crop) * scale]
        return view

    def __call__(self, inputs: dict[str, Any]) -> ViewPair:
        """Args: inputs, the preprocessor's dict (``series`` (B, T, C, H, W) per stream,
        ``day_of_year``, ``valid``, ...). Returns a :class:`ViewPair`."""
        height, width = next(iter(inputs["series"].values())).shape[-2:]
        student_top, teacher_top = self._offsets(height)
        student_left, teacher_left = self._offsets(width)
        crop = self.crop_size // self.cell_size
        top, left = max(student_top, teacher_top), max(student_left, teacher_left)
        size = (crop - abs(student_top - teacher_top), crop - abs(student_left - teacher_left))
        return ViewPair(student=self._view(inputs, student_top, student_left),
                        teacher=self._view(inputs, teacher_top, teacher_left),
                        student_overlap=(top - student_top, left - student_left),
                        teacher_overlap=(top - teacher_top, left - teacher_left),
                        overlap_size=size)
