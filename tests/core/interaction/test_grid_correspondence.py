"""GridCorrespondence: affine maps between co-registered rasters, built by hand or from
rasterio-style geotransforms; exact pattern recovery, inverse, windows, footprints."""
from __future__ import annotations

import pytest
import torch
from affine import Affine

from interlace.core.engine.registry import TASK_UTILS
from interlace.core.interaction.correspondence import Footprint
from interlace.core.interaction.grid_correspondence import GridCorrespondence
from interlace.core.interaction.streams import StreamFeatures

# B at half A's resolution, shifted by (1, 0.75) B pixels.
HALF_SHIFTED = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.5, 0.75], [0.0, 0.0, 1.0]])


def coordinate_map(h: int, w: int, batch: int = 1) -> torch.Tensor:
    """(B, 2, h, w): continuous pixel coordinates (x, y) of each pixel centre. Linear in
    position, so bilinear sampling returns the sampled coordinate exactly."""
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    return torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)]).expand(
        batch, 2, h, w).clone()


def a_centres(levels) -> torch.Tensor:
    """(N, 2) level-0 pixel coordinates of every A query (flatten order)."""
    h0, w0 = levels[0]
    out = []
    for h, w in levels:
        ys = (torch.arange(h) + 0.5) * h0 / h
        xs = (torch.arange(w) + 0.5) * w0 / w
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack([gx, gy], -1).reshape(-1, 2))
    return torch.cat(out)


def test_half_resolution_shifted_affine_maps_every_level_exactly():
    corr = GridCorrespondence(HALF_SHIFTED)
    a = StreamFeatures(levels=[torch.randn(1, 3, 8, 8), torch.randn(1, 3, 4, 4)])
    b = StreamFeatures(levels=[coordinate_map(6, 6)])
    got = corr.gather_b_for_a(a, b)
    assert got.num_queries_per_sample == 64 + 16
    assert got.query_index.tolist() == list(range(80))  # one bilinear key each, all inside B
    expect = a_centres([(8, 8), (4, 4)]) * 0.5 + torch.tensor([1.0, 0.75])
    assert torch.allclose(got.values, expect, atol=1e-5)
    assert torch.allclose(got.key_position, expect / 6, atol=1e-6)


def test_from_transforms_matches_the_hand_built_affine():
    ta = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0)   # 10 m pixels
    tb = Affine(20.0, 0.0, 499980.0, 0.0, -20.0, 4200040.0)   # 20 m pixels, other origin
    # col_b = (500000 + 10 c - 499980) / 20 = 0.5 c + 1; row_b = 0.5 r + 2.
    hand = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.5, 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    built = GridCorrespondence.from_transforms(ta, tb)
    assert torch.allclose(built.a_to_b, hand, atol=1e-12)
    a = StreamFeatures(levels=[torch.randn(2, 3, 8, 8)])
    b = StreamFeatures(levels=[coordinate_map(8, 8, batch=2)])
    g1, g2 = built.gather_b_for_a(a, b), GridCorrespondence(hand).gather_b_for_a(a, b)
    assert torch.equal(g1.query_index, g2.query_index) and torch.allclose(g1.values, g2.values)
    # Per-sample transforms stack into (B, 3, 3); a stride folds into the scale.
    per_sample = GridCorrespondence.from_transforms([ta, ta], tb, stride_a=2)
    assert per_sample.a_to_b.shape == (2, 3, 3)
    assert torch.allclose(per_sample.a_to_b[1, 0],
                          torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))


def test_positions_outside_b_are_invalid():
    shift_left = torch.tensor([[0.5, 0.0, -2.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    a = StreamFeatures(levels=[torch.randn(1, 3, 8, 8)])
    b = StreamFeatures(levels=[coordinate_map(6, 6)])
    got = GridCorrespondence(shift_left).gather_b_for_a(a, b)
    cols = got.query_index % 8
    # x_b = 0.5 (j + 0.5) - 2 >= 0 only for columns 4..7.
    assert got.num_pairs == 8 * 4 and cols.min() == 4
    assert ((got.key_position >= 0) & (got.key_position < 1)).all()


def test_inverse_direction_round_trips():
    corr = GridCorrespondence(HALF_SHIFTED)
    a = StreamFeatures(levels=[coordinate_map(8, 8)])
    b = StreamFeatures(levels=[torch.randn(1, 3, 6, 6)])
    got = corr.gather_a_for_b(a, b)
    # B centres j + 0.5 map back to x_a = 2 (x_b - 1): inside A for B columns/rows 1..4.
    rows, cols = got.query_index // 6, got.query_index % 6
    assert got.num_pairs == 16 and rows.unique().tolist() == [1, 2, 3, 4]
    assert cols.unique().tolist() == [1, 2, 3, 4]
    b_xy = torch.stack([cols + 0.5, rows + 0.5], -1).float()
    a_xy = got.values
    assert torch.allclose(a_xy, 2 * (b_xy - torch.tensor([1.0, 0.75])), atol=1e-5)
    assert torch.allclose(a_xy * 0.5 + torch.tensor([1.0, 0.75]), b_xy, atol=1e-5)  # back to B


def test_window_gives_a_lattice_of_neighbours():
    corr = GridCorrespondence(torch.eye(3), window=3)
    a = StreamFeatures(levels=[torch.randn(1, 3, 6, 6)])
    b = StreamFeatures(levels=[coordinate_map(6, 6)])
    got = corr.gather_b_for_a(a, b)
    counts = got.keys_per_query().view(6, 6)
    assert counts[1:5, 1:5].eq(9).all() and counts[0, 0] == 4 and counts[0, 3] == 6
    values, valid = got.to_dense()
    centre = torch.tensor([2.5, 2.5])                         # query (2, 2)
    keys = values[0, 2 * 6 + 2][valid[0, 2 * 6 + 2]]
    offsets = keys - centre
    assert torch.allclose(offsets.abs().max(0).values, torch.ones(2))
    assert torch.allclose(offsets.mean(0), torch.zeros(2), atol=1e-6)


def test_footprint_samples_are_mapped_into_b():
    corr = GridCorrespondence(HALF_SHIFTED, a_shape=(8, 8))
    b = StreamFeatures(levels=[coordinate_map(6, 6)])
    fp = Footprint(center=torch.tensor([[[0.5, 0.5], [3.0, 3.0]]]),
                   size=torch.tensor([[[0.25, 0.25], [0.1, 0.1]]]), yaw=torch.zeros(1, 2))
    got = corr.gather_footprint(fp, b, grid_size=2)
    assert got.keys_per_query().tolist() == [[4, 0]]          # the second one is off both maps
    # A samples at 0.5 +- 0.0625 -> A pixels 3.5 / 4.5 -> B = 0.5 x + (1, 0.75).
    xs = torch.tensor([3.5, 4.5]) * 0.5 + 1.0
    ys = torch.tensor([3.5, 4.5]) * 0.5 + 0.75
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    assert torch.allclose(got.values, torch.stack([gx, gy], -1).reshape(-1, 2), atol=1e-5)


def test_rotated_footprint_keeps_its_extent():
    corr = GridCorrespondence(torch.eye(3), a_shape=(10, 10))
    b = StreamFeatures(levels=[coordinate_map(10, 10)])
    fp = Footprint(center=torch.tensor([[[0.5, 0.5]]]), size=torch.tensor([[[0.4, 0.2]]]),
                   yaw=torch.tensor([[torch.pi / 2]]))
    got = corr.gather_footprint(fp, b, grid_size=4)
    # Rotated a quarter turn: the long side (4 px) now runs along y.
    spread = got.values.max(0).values - got.values.min(0).values
    assert torch.allclose(spread, torch.tensor([1.5, 3.0]), atol=1e-5)


def test_footprint_needs_a_shape():
    corr = GridCorrespondence(torch.eye(3))
    fp = Footprint(center=torch.full((1, 1, 2), 0.5), size=torch.full((1, 1, 2), 0.1),
                   yaw=torch.zeros(1, 1))
    with pytest.raises(ValueError, match="a_shape"):
        corr.gather_footprint(fp, StreamFeatures(levels=[coordinate_map(4, 4)]))


def test_absent_samples_give_no_pairs():
    corr = GridCorrespondence(torch.eye(3), a_shape=(4, 4))
    a = StreamFeatures(levels=[coordinate_map(4, 4, batch=3)],
                       present=torch.tensor([True, False, True]))
    b = StreamFeatures(levels=[coordinate_map(4, 4, batch=3)],
                       present=torch.tensor([True, True, False]))
    for got in (corr.gather_b_for_a(a, b), corr.gather_a_for_b(a, b)):
        assert got.keys_per_query().sum(1).tolist() == [16, 0, 0]
    fp = Footprint(center=torch.full((3, 1, 2), 0.5), size=torch.full((3, 1, 2), 0.5),
                   yaw=torch.zeros(3, 1))
    got = corr.gather_footprint(fp, b, grid_size=2)
    assert got.keys_per_query().flatten().tolist() == [4, 4, 0]
    assert corr.ray_layout(a, b) is None


def test_registered_for_configs():
    assert TASK_UTILS.get("GridCorrespondence") is GridCorrespondence
