"""HeatmapQueryInitializer: true peaks, per-class suppression kernels, positions and
features; footprint sampling on a coordinate map."""
import math

import pytest
import torch

from interlace.core.interaction.correspondence import Footprint
from interlace.core.interaction.footprint_sampling import (footprint_grid,
                                                          sample_footprint_on_map)
from interlace.core.interaction.query_init import HeatmapQueryInitializer

H, W = 12, 16  # non-square so a swapped x / y shows up
PEAKS = {0: (3, 4, 0.9), 1: (9, 12, 0.8), 2: (8, 3, 0.7)}  # class: (row, col, score)
SHOULDER = (2, 8, 4, 0.65)  # class 2, right next to its peak at (8, 3)


def _heatmap_logits():
    """One sample: three Gaussian blobs of different classes plus a shoulder cell."""
    rows = torch.arange(H, dtype=torch.float32).view(H, 1)
    cols = torch.arange(W, dtype=torch.float32).view(1, W)
    prob = torch.full((3, H, W), 0.01)
    for cls, (i, j, peak) in PEAKS.items():
        blob = peak * torch.exp(-((rows - i) ** 2 + (cols - j) ** 2) / 2.0)
        prob[cls] = torch.maximum(prob[cls], blob)
    cls, i, j, value = SHOULDER
    prob[cls, i, j] = value
    return torch.logit(prob)


def _batch():
    first = _heatmap_logits()
    # Second sample: the same scene mirrored left-right, to catch batch mixing.
    return torch.stack([first, first.flip(-1)])


def _expected(sample, entries):
    out = []
    for cls, i, j in entries:
        j = j if sample == 0 else W - 1 - j
        out.append((cls, i, j))
    return out


def _selected(init, sample):
    h_w = [(int(c), int(f) // W, int(f) % W) for c, f in
           zip(init.class_ids[sample], init.flat_index[sample])]
    return h_w


def test_picks_true_peaks_positions_and_features():
    torch.manual_seed(0)
    init_module = HeatmapQueryInitializer(num_classes=3, num_queries=3, embed_dims=8)
    fmap = torch.randn(2, 8, H, W)
    init = init_module(fmap, _batch())
    for sample in range(2):
        expected = _expected(sample, [(c, i, j) for c, (i, j, _) in PEAKS.items()])
        got = _selected(init, sample)
        assert got == expected  # ordered by score: 0.9, 0.8, 0.7
        for q, (cls, i, j) in enumerate(got):
            pos = init.positions[sample, q]
            assert torch.allclose(pos, torch.tensor([(j + 0.5) / W, (i + 0.5) / H]))
            want = fmap[sample, :, i, j] + init_module.class_embedding.weight[cls]
            assert torch.allclose(init.features[sample, q], want)
            assert math.isclose(float(init.scores[sample, q]), PEAKS[cls][2], rel_tol=1e-5)


@pytest.mark.parametrize("kernels, keeps_shoulder", [(None, False), ({2: 1}, True)])
def test_per_class_kernel_controls_shoulder(kernels, keeps_shoulder):
    init_module = HeatmapQueryInitializer(num_classes=3, num_queries=4, embed_dims=4,
                                          class_kernel_sizes=kernels)
    init = init_module(torch.zeros(2, 4, H, W), _batch())
    cls, i, j, _ = SHOULDER
    for sample in range(2):
        shoulder = _expected(sample, [(cls, i, j)])[0]
        got = _selected(init, sample)
        assert (shoulder in got) == keeps_shoulder
        if keeps_shoulder:
            assert got[3] == shoulder  # 0.65 beats every other cell that survives
        for peak in _expected(sample, [(c, a, b) for c, (a, b, _) in PEAKS.items()]):
            assert peak in got


def test_heatmap_head_builds_heatmap_and_gets_gradient():
    init_module = HeatmapQueryInitializer(num_classes=2, num_queries=5, embed_dims=8,
                                          heatmap_head=True)
    fmap = torch.randn(2, 8, 6, 6, requires_grad=True)
    init = init_module(fmap)
    assert init.heatmap.shape == (2, 2, 6, 6)
    assert init.features.shape == (2, 5, 8) and init.positions.shape == (2, 5, 2)
    init.scores.sum().backward()
    assert init_module.heatmap_head[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="heatmap_head=False"):
        HeatmapQueryInitializer(num_classes=2, num_queries=5, embed_dims=8)(fmap)


# --- footprint sampling ----------------------------------------------------------------
def _coordinate_map(h=8, w=16):
    """(1, 2, h, w): channel 0 = x, channel 1 = y of each cell centre (normalised).
    Bilinear sampling of a linear function returns the sample point itself."""
    xs = ((torch.arange(w) + 0.5) / w).view(1, w).expand(h, w)
    ys = ((torch.arange(h) + 0.5) / h).view(h, 1).expand(h, w)
    return torch.stack([xs, ys]).unsqueeze(0)


def _footprint(center, size, yaw):
    return Footprint(center=torch.tensor([[center]]), size=torch.tensor([[size]]),
                     yaw=torch.tensor([[yaw]]))


def test_axis_aligned_grid_points():
    fp = _footprint((0.5, 0.5), (0.3, 0.15), 0.0)
    out = sample_footprint_on_map(_coordinate_map(), fp, grid_size=3)
    assert out.shape == (1, 1, 9, 2)
    # Bin centres at -1/3, 0, +1/3 of the extent; row-major (y outer, x inner).
    expected = [(x, y) for y in (0.45, 0.5, 0.55) for x in (0.4, 0.5, 0.6)]
    assert torch.allclose(out[0, 0], torch.tensor(expected), atol=1e-5)


def test_rotated_90_degrees_grid_points():
    fp = _footprint((0.5, 0.4), (0.3, 0.15), math.pi / 2)
    out = sample_footprint_on_map(_coordinate_map(), fp, grid_size=3)
    # Heading along +y: the along offsets (-0.1, 0, 0.1) move y; the across offsets
    # (-0.05, 0, 0.05) move x the other way (x = cx - across).
    expected = [(x, y) for x in (0.55, 0.5, 0.45) for y in (0.3, 0.4, 0.5)]
    assert torch.allclose(out[0, 0], torch.tensor(expected), atol=1e-5)


def test_enlarge_doubles_spread():
    fp = _footprint((0.5, 0.5), (0.2, 0.1), 0.3)
    single = footprint_grid(fp, 5) - 0.5
    double = footprint_grid(fp, 5, enlarge=2.0) - 0.5
    assert torch.allclose(double, 2 * single, atol=1e-6)
    sampled = sample_footprint_on_map(_coordinate_map(), fp, grid_size=5, enlarge=2.0)
    assert torch.allclose(sampled[0, 0] - 0.5, double[0, 0], atol=1e-5)
