from __future__ import annotations

import numpy as np
import pytest

from interlace.domains.remote_sensing.data import grid_windows
from interlace.domains.remote_sensing.evaluation import SlidingWindowMosaic


def _run(height, width, window, overlap, predict, channels=2):
    rows = {}
    mosaic = SlidingWindowMosaic(height, width, channels, lambda r0, block: rows.update(
        {r0 + i: block[:, i] for i in range(block.shape[1])}))
    for w in grid_windows((0, 0, width, height), window, window - overlap):
        mosaic.add(int(w.row_off), int(w.col_off), predict(w))
    mosaic.finish()
    assert sorted(rows) == list(range(height))                  # each row once, in order
    return np.stack([rows[r] for r in range(height)], 1), mosaic


def test_constant_input_gives_seam_free_constant_output():
    out, _ = _run(100, 90, 32, 8, lambda w: np.full((2, w.height, w.width), 3.5, np.float32))
    np.testing.assert_allclose(out, 3.5, rtol=1e-6)


def test_window_disagreement_fades_in_instead_of_jumping():
    # Each window predicts a different constant: blended output changes smoothly.
    rng = np.random.default_rng(0)
    out, _ = _run(96, 96, 32, 16, lambda w: np.full((2, w.height, w.width), rng.random(), np.float32))
    hard_cut_jump = 0.3
    assert np.abs(np.diff(out[0], axis=1)).max() < hard_cut_jump
    assert np.abs(np.diff(out[0], axis=0)).max() < hard_cut_jump


def test_memory_holds_a_strip_whatever_the_scene_height():
    held = []
    for height in (64, 640):
        _, mosaic = _run(height, 48, 32, 8, lambda w: np.ones((2, w.height, w.width), np.float32))
        held.append(mosaic.max_rows_held)
    assert held[0] == held[1] <= 32 + 24


def test_windows_out_of_row_order_are_refused():
    mosaic = SlidingWindowMosaic(64, 32, 1, lambda *a: None)
    mosaic.add(0, 0, np.ones((1, 32, 32)))
    mosaic.add(32, 0, np.ones((1, 32, 32)))
    with pytest.raises(ValueError, match="row-major"):
        mosaic.add(0, 0, np.ones((1, 32, 32)))
    gap = SlidingWindowMosaic(64, 32, 1, lambda *a: None)
    with pytest.raises(ValueError, match="row 0 was covered by no window"):
        gap.add(32, 0, np.ones((1, 32, 32)))
