"""``SlidingWindowMosaic``: blend overlapping window predictions of a scene, strip by strip.

Windows arrive in row-major order (as ``grid_windows`` / ``SceneWindowReader`` yield
them). Each window's logits (C, h, w) are multiplied by a separable cosine ramp that
is largest in the window's centre and small (never zero) at its edges, and added into
an accumulator that holds only the band of rows the current row of windows covers.
When the next row of windows starts at row r, rows above r can receive nothing more:
they are normalised by the summed weights and handed to ``sink(row0, block)``, then
dropped. Memory is O(C x window height x scene width), whatever the scene height.

Because every pixel is a weighted *average* of the windows covering it, a constant
input gives the same constant everywhere (no seams), and neighbouring windows'
disagreements fade in over the overlap instead of jumping at a cut.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

__all__ = ["SlidingWindowMosaic", "cosine_ramp"]


def cosine_ramp(length: int, floor: float = 1e-3) -> np.ndarray:
    """(length,) weights ``0.5 - 0.5 cos(2 pi (i + 0.5) / length)``, at least `floor`."""
    i = np.arange(length, dtype=np.float64)
    return np.maximum(0.5 - 0.5 * np.cos(2 * np.pi * (i + 0.5) / length), floor).astype(np.float32)


class SlidingWindowMosaic:
    """Args:
        height, width: scene size in pixels.
        channels: logits per pixel (classes).
        sink: ``sink(row0, block)`` receives finished rows, block (channels, rows, width)
            float32 blended logits, top to bottom, each row exactly once.
    """

    def __init__(self, height: int, width: int, channels: int,
                 sink: Callable[[int, np.ndarray], None]) -> None:
        self.height, self.width, self.channels, self.sink = int(height), int(width), int(channels), sink
        self.top = 0                                   # first row not yet emitted
        self.sum = np.zeros((channels, 0, width), np.float32)
        self.weight = np.zeros((0, width), np.float32)
        self.max_rows_held = 0

    def _grow(self, bottom: int) -> None:
        """Make the buffer reach scene row `bottom` (exclusive)."""
        extra = bottom - (self.top + self.weight.shape[0])
        if extra > 0:
            self.sum = np.concatenate([self.sum, np.zeros((self.channels, extra, self.width), np.float32)], 1)
            self.weight = np.concatenate([self.weight, np.zeros((extra, self.width), np.float32)], 0)
        self.max_rows_held = max(self.max_rows_held, self.weight.shape[0])

    def _emit(self, until: int) -> None:
        """Normalise and hand rows [top, until) to the sink, then drop them."""
        n = until - self.top
        if n <= 0:
            return
        self._grow(until)  # rows never reached by a window show up as weight 0 below
        weight = self.weight[:n]
        if (weight <= 0).any():
            row = self.top + int(np.argwhere(weight <= 0)[0, 0])
            raise ValueError(f"SlidingWindowMosaic: row {row} was covered by no window")
        self.sink(self.top, self.sum[:, :n] / weight[None])
        self.sum, self.weight = self.sum[:, n:], self.weight[n:]
        self.top += n

    def add(self, row_off: int, col_off: int, logits: np.ndarray) -> None:
        """Add a window's logits (channels, h, w) at (row_off, col_off).

        Raises:
            ValueError: the window starts above rows already emitted (not row-major), or
                lies outside the scene."""
        logits = np.asarray(logits, np.float32)
        channels, h, w = logits.shape
        if channels != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {channels}")
        if row_off < self.top:
            raise ValueError(f"window at row {row_off} arrives after rows up to {self.top} were "
                             "emitted; add windows in row-major order")
        if row_off + h > self.height or col_off + w > self.width or row_off < 0 or col_off < 0:
            raise ValueError(f"window ({row_off}, {col_off}, {h}, {w}) lies outside the "
                             f"{self.height} x {self.width} scene")
        self._emit(row_off)                             # rows above this window are final
        self._grow(row_off + h)
        ramp = cosine_ramp(h)[:, None] * cosine_ramp(w)[None, :]
        r0 = row_off - self.top
        self.sum[:, r0:r0 + h, col_off:col_off + w] += logits * ramp[None]
        self.weight[r0:r0 + h, col_off:col_off + w] += ramp

    def finish(self) -> None:
        """Emit the remaining rows; every scene row must have been covered."""
        self._emit(self.height)
        if self.top != self.height:
            raise ValueError(f"SlidingWindowMosaic: rows {self.top}..{self.height} were covered "
                             "by no window")
