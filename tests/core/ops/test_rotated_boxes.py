"""Rotated 3D / BEV box utilities checked against hand-computed values and shapely."""
from __future__ import annotations

import math

import pytest
import torch
from shapely.geometry import Point, Polygon

from interlace.core.ops import rotated_iou
from interlace.core.ops.rotated_boxes import (
    bev_intersection_aligned,
    bev_iou_rotated,
    bev_iou_rotated_aligned,
    bottom_center_to_center,
    box_corners_3d,
    box_corners_bev,
    center_to_bottom_center,
    iou_3d,
    iou_3d_aligned,
    points_in_boxes,
    points_in_boxes_index,
)


def random_boxes(n: int, gen: torch.Generator, spread: float = 4.0, dtype=torch.float64) -> torch.Tensor:
    """(n, 7) boxes: centres in a small area so many pairs overlap, sizes 0.5-5 m."""
    xy = (torch.rand(n, 2, generator=gen, dtype=dtype) * 2 - 1) * spread
    z = (torch.rand(n, 1, generator=gen, dtype=dtype) * 2 - 1) * 1.5
    size = torch.rand(n, 3, generator=gen, dtype=dtype) * 4.5 + 0.5
    yaw = (torch.rand(n, 1, generator=gen, dtype=dtype) * 2 - 1) * math.pi
    return torch.cat([xy, z, size, yaw], dim=1)


def polygon(box: torch.Tensor) -> Polygon:
    return Polygon(box_corners_bev(box[None].double())[0].tolist())


def shapely_bev_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    pa, pb = polygon(a), polygon(b)
    inter = pa.intersection(pb).area
    union = pa.area + pb.area - inter
    return inter / union if union > 0 else 0.0


def z_overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    top = min(a[2] + a[5] / 2, b[2] + b[5] / 2)
    bottom = max(a[2] - a[5] / 2, b[2] - b[5] / 2)
    return max(0.0, float(top - bottom))


# ----------------------------------------------------------------------------- corners

def test_corners_of_axis_aligned_box_match_hand_values():
    box = torch.tensor([[1.0, 2.0, 3.0, 4.0, 2.0, 6.0, 0.0]])
    expected = torch.tensor([
        [3.0, 3.0, 0.0], [-1.0, 3.0, 0.0], [-1.0, 1.0, 0.0], [3.0, 1.0, 0.0],
        [3.0, 3.0, 6.0], [-1.0, 3.0, 6.0], [-1.0, 1.0, 6.0], [3.0, 1.0, 6.0],
    ])
    torch.testing.assert_close(box_corners_3d(box)[0], expected)


def test_corners_of_box_rotated_90_degrees_put_length_along_y():
    box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, math.pi / 2]])
    # Local (+l/2, +w/2) = (2, 1) rotated by +90 deg is (-1, 2).
    expected_bev = torch.tensor([[-1.0, 2.0], [-1.0, -2.0], [1.0, -2.0], [1.0, 2.0]])
    torch.testing.assert_close(box_corners_bev(box)[0], expected_bev, atol=1e-6, rtol=0)
    torch.testing.assert_close(box_corners_3d(box)[0, :4, :2], expected_bev, atol=1e-6, rtol=0)


def test_corners_of_box_rotated_30_degrees_match_hand_rotation():
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    box = torch.tensor([[10.0, -5.0, 1.0, 2.0, 1.0, 1.0, math.pi / 6]], dtype=torch.float64)
    local = [(1.0, 0.5), (-1.0, 0.5), (-1.0, -0.5), (1.0, -0.5)]
    expected = torch.tensor([[10.0 + x * c - y * s, -5.0 + x * s + y * c] for x, y in local],
                            dtype=torch.float64)
    corners = box_corners_3d(box)[0]
    torch.testing.assert_close(corners[:4, :2], expected)
    torch.testing.assert_close(corners[4:, :2], expected)
    torch.testing.assert_close(corners[:4, 2], torch.full((4,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(corners[4:, 2], torch.full((4,), 1.5, dtype=torch.float64))


def test_corners_round_trip_recovers_centre_and_sizes():
    gen = torch.Generator().manual_seed(1)
    boxes = random_boxes(50, gen, spread=50.0)
    corners = box_corners_3d(boxes)
    torch.testing.assert_close(corners.mean(dim=1), boxes[:, :3])
    length = (corners[:, 0] - corners[:, 1]).norm(dim=-1)
    width = (corners[:, 1] - corners[:, 2]).norm(dim=-1)
    height = (corners[:, 4] - corners[:, 0]).norm(dim=-1)
    torch.testing.assert_close(torch.stack([length, width, height], 1), boxes[:, 3:6])
    # Corner 1 -> 0 runs forward along the heading (cos yaw, sin yaw).
    heading = (corners[:, 0, :2] - corners[:, 1, :2]) / length[:, None]
    torch.testing.assert_close(heading, torch.stack([boxes[:, 6].cos(), boxes[:, 6].sin()], 1))


def test_bev_corners_are_counter_clockwise_and_ignore_extra_columns():
    gen = torch.Generator().manual_seed(2)
    boxes = random_boxes(30, gen)
    with_velocity = torch.cat([boxes, torch.randn(30, 2, dtype=boxes.dtype, generator=gen)], 1)
    corners = box_corners_bev(with_velocity)
    torch.testing.assert_close(corners, box_corners_bev(boxes))
    nxt = corners.roll(-1, dims=1)
    signed_area = 0.5 * (corners[..., 0] * nxt[..., 1] - corners[..., 1] * nxt[..., 0]).sum(1)
    torch.testing.assert_close(signed_area, boxes[:, 3] * boxes[:, 4])
    # 5-column BEV boxes give the same corners as the 3D boxes they come from.
    bev = boxes[:, [0, 1, 3, 4, 6]]
    torch.testing.assert_close(box_corners_bev(bev), corners)


def test_bottom_center_conversion_round_trips_and_raises_z_by_half_height():
    gen = torch.Generator().manual_seed(3)
    boxes = torch.cat([random_boxes(10, gen), torch.randn(10, 2, dtype=torch.float64, generator=gen)], 1)
    centred = bottom_center_to_center(boxes)
    torch.testing.assert_close(centred[:, 2], boxes[:, 2] + boxes[:, 5] / 2)
    torch.testing.assert_close(centred[:, [0, 1, 3, 4, 5, 6, 7, 8]], boxes[:, [0, 1, 3, 4, 5, 6, 7, 8]])
    torch.testing.assert_close(center_to_bottom_center(centred), boxes)
    assert centred.data_ptr() != boxes.data_ptr()


# ----------------------------------------------------------------------------- points

def test_points_in_boxes_matches_shapely_and_z_range():
    gen = torch.Generator().manual_seed(4)
    boxes = random_boxes(20, gen, spread=8.0)
    points = torch.cat([(torch.rand(2000, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 10,
                        (torch.rand(2000, 1, generator=gen, dtype=torch.float64) * 2 - 1) * 4,
                        torch.rand(2000, 1, generator=gen, dtype=torch.float64)], dim=1)  # + intensity
    mask = points_in_boxes(points.float(), boxes.float())
    assert mask.shape == (2000, 20) and mask.dtype == torch.bool
    expected = torch.zeros_like(mask)
    near_boundary = torch.zeros_like(mask)
    for n, box in enumerate(boxes):
        poly = polygon(box)
        for p, pt in enumerate(points.tolist()):
            dz = abs(pt[2] - float(box[2])) - float(box[5]) / 2
            shp = Point(pt[0], pt[1])
            expected[p, n] = poly.covers(shp) and dz <= 0
            near_boundary[p, n] = abs(dz) < 1e-4 or poly.exterior.distance(shp) < 1e-4
    assert expected.sum() > 100  # the test must exercise "inside", not only "outside"
    assert torch.equal(mask[~near_boundary], expected[~near_boundary])


def test_points_on_box_faces_count_as_inside():
    box = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0, math.pi / 4]])
    c = box_corners_3d(box)[0]
    on_faces = torch.cat([c, (c[0:1] + c[1:2]) / 2, (c[0:1] + c[6:7]) / 2])
    assert points_in_boxes(on_faces, box).all()
    outside = on_faces * 1.001
    assert not points_in_boxes(outside[:8], box).any()


def test_points_in_boxes_index_returns_first_containing_box_or_minus_one():
    boxes = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0],
                          [0.5, 0.0, 0.0, 2.0, 2.0, 2.0, 0.3],
                          [5.0, 5.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    points = torch.tensor([[0.9, 0.0, 0.0],    # in boxes 0 and 1 -> 0
                           [1.4, 0.0, 0.0],    # only in box 1
                           [5.0, 5.0, 0.4],    # in box 2
                           [5.0, 5.0, 0.6],    # above box 2
                           [-3.0, 0.0, 0.0]])  # nowhere
    assert points_in_boxes_index(points, boxes).tolist() == [0, 1, 2, -1, -1]
    assert points_in_boxes_index(points, boxes[:0]).tolist() == [-1] * 5


# ----------------------------------------------------------------------------- BEV IoU

def test_bev_iou_matches_shapely_on_random_boxes():
    gen = torch.Generator().manual_seed(5)
    a, b = random_boxes(200, gen, spread=3.0), random_boxes(200, gen, spread=3.0)
    expected = torch.tensor([shapely_bev_iou(x, y) for x, y in zip(a, b)], dtype=torch.float64)
    assert (expected > 0).sum() > 100 and (expected == 0).sum() > 10
    for dtype in (torch.float64, torch.float32):
        got = bev_iou_rotated_aligned(a.to(dtype), b.to(dtype))
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=0)


def test_bev_iou_pairwise_matches_shapely_and_aligned_is_its_diagonal():
    gen = torch.Generator().manual_seed(6)
    a, b = random_boxes(20, gen), random_boxes(25, gen)
    expected = torch.tensor([[shapely_bev_iou(x, y) for y in b] for x in a], dtype=torch.float64)
    got = bev_iou_rotated(a, b)
    assert got.shape == (20, 25)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(bev_iou_rotated_aligned(a, b[:20]), got[:, :20].diagonal())


def test_bev_iou_is_far_from_origin_float32_accurate():
    # nuScenes boxes sit up to ~54 m away; precision must not degrade with the offset.
    gen = torch.Generator().manual_seed(7)
    a = random_boxes(100, gen, spread=2.0)
    b = a.clone()
    b[:, :2] += torch.randn(100, 2, generator=gen, dtype=torch.float64) * 0.5
    b[:, 6] += torch.randn(100, generator=gen, dtype=torch.float64) * 0.3
    shift = torch.tensor([48.0, -51.0, 0, 0, 0, 0, 0], dtype=torch.float64)
    expected = torch.tensor([shapely_bev_iou(x, y) for x, y in zip(a, b)], dtype=torch.float64)
    got = bev_iou_rotated_aligned((a + shift).float(), (b + shift).float())
    torch.testing.assert_close(got.double(), expected, atol=2e-5, rtol=0)


def test_bev_iou_accepts_5_column_and_7_plus_column_boxes_alike():
    gen = torch.Generator().manual_seed(8)
    a, b = random_boxes(8, gen), random_boxes(9, gen)
    a9 = torch.cat([a, torch.randn(8, 2, dtype=a.dtype, generator=gen)], 1)
    bev_b = b[:, [0, 1, 3, 4, 6]]
    torch.testing.assert_close(bev_iou_rotated(a9, bev_b), bev_iou_rotated(a, b))
    with pytest.raises(ValueError):
        bev_iou_rotated(a[:, :6], b)


@pytest.mark.parametrize("yaw", [0.0, 0.4, math.pi / 2, -2.5])
def test_bev_iou_of_identical_boxes_is_one(yaw):
    box = torch.tensor([[3.0, -40.0, 4.2, 1.8, yaw]])
    assert bev_iou_rotated(box, box).item() == pytest.approx(1.0, abs=1e-6)
    assert bev_iou_rotated_aligned(box, box).item() == pytest.approx(1.0, abs=1e-6)


def test_bev_iou_of_square_and_itself_rotated_90_degrees_is_one():
    square = torch.tensor([[1.0, 2.0, 3.0, 3.0, 0.2]])
    turned = square.clone()
    turned[0, 4] += math.pi / 2
    assert bev_iou_rotated(square, turned).item() == pytest.approx(1.0, abs=1e-6)


def test_bev_iou_of_disjoint_and_edge_touching_boxes_is_zero():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0, 0.0]])
    far = torch.tensor([[10.0, 0.0, 2.0, 2.0, 0.7]])
    side_by_side = torch.tensor([[2.0, 0.0, 2.0, 2.0, 0.0]])     # shares the edge x = 1
    corner_touch = torch.tensor([[2.0, 2.0, 2.0, 2.0, 0.0]])     # shares the corner (1, 1)
    # Near-miss: inside the circumcircle reach but no overlap (diamond next to the square).
    diamond = torch.tensor([[1.0 + math.sqrt(2) + 0.01, 0.0, 2.0, 2.0, math.pi / 4]])
    for b in (far, side_by_side, corner_touch, diamond):
        assert bev_iou_rotated(a, b).item() == pytest.approx(0.0, abs=1e-6)


def test_bev_iou_with_shared_edges_matches_area_ratio():
    a = torch.tensor([[0.0, 0.0, 4.0, 2.0, 0.0]])
    half = torch.tensor([[1.0, 0.0, 2.0, 2.0, 0.0]])            # right half of a: 3 shared edges
    shifted = torch.tensor([[1.0, 0.0, 4.0, 2.0, 0.0]])          # overlap 3 x 2
    assert bev_iou_rotated(a, half).item() == pytest.approx(0.5, abs=1e-6)
    assert bev_iou_rotated(a, shifted).item() == pytest.approx(6.0 / 10.0, abs=1e-6)
    # Same with both boxes rotated: the answer cannot depend on the frame.
    rot = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.1]])
    c, s = math.cos(1.1), math.sin(1.1)
    for b, want in ((half, 0.5), (shifted, 0.6)):
        rb = b + rot
        rb[0, :2] = torch.tensor([c * b[0, 0] - s * b[0, 1], s * b[0, 0] + c * b[0, 1]])
        assert bev_iou_rotated(a + rot, rb).item() == pytest.approx(want, abs=1e-5)


def test_bev_iou_of_contained_box_is_area_ratio():
    outer = torch.tensor([[0.0, 0.0, 6.0, 4.0, 0.3]])
    inner = torch.tensor([[0.5, 0.2, 2.0, 1.0, 1.2]])
    ratio = (2.0 * 1.0) / (6.0 * 4.0)
    assert bev_iou_rotated(outer, inner).item() == pytest.approx(ratio, abs=1e-6)
    assert bev_iou_rotated(inner, outer).item() == pytest.approx(ratio, abs=1e-6)


def test_degenerate_boxes_give_zero_iou_and_no_nan():
    boxes = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],     # point
                          [0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.3],     # zero width
                          [0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0],     # zero height
                          [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0]], requires_grad=True)
    expected = {
        # zero-area footprints give 0 in BEV; the flat box still has a 2 x 2 footprint.
        bev_iou_rotated: torch.tensor([[0.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]),
        # every box but the last has zero volume.
        iou_3d: torch.tensor([[0.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]),
    }
    for fn, want in expected.items():
        iou = fn(boxes, boxes)
        torch.testing.assert_close(iou.detach(), want, atol=1e-6, rtol=0)
        iou.sum().backward()
        assert torch.isfinite(boxes.grad).all()
        boxes.grad = None
    for fn in (bev_iou_rotated_aligned, iou_3d_aligned):
        aligned = fn(boxes, boxes.flip(0))
        assert torch.isfinite(aligned).all()
        aligned.sum().backward()
        assert torch.isfinite(boxes.grad).all()
        boxes.grad = None


def test_empty_inputs_give_empty_outputs():
    a = torch.zeros(0, 7)
    b = torch.rand(3, 7)
    assert bev_iou_rotated(a, b).shape == (0, 3)
    assert iou_3d(b, a).shape == (3, 0)
    assert bev_iou_rotated_aligned(a, a).shape == (0,)
    assert points_in_boxes(torch.rand(4, 3), a).shape == (4, 0)


def test_chunked_computation_matches_single_chunk(monkeypatch):
    gen = torch.Generator().manual_seed(9)
    a, b = random_boxes(40, gen), random_boxes(30, gen)
    whole = bev_iou_rotated(a, b)
    monkeypatch.setattr(rotated_iou, "_PAIRS_PER_CHUNK", 7)
    monkeypatch.setattr(rotated_iou, "_PAIRWISE_BLOCK", 50)
    torch.testing.assert_close(bev_iou_rotated(a, b), whole)
    whole_3d = iou_3d(a, b)
    monkeypatch.setattr(rotated_iou, "_PAIRS_PER_CHUNK", 1 << 16)
    torch.testing.assert_close(iou_3d(a, b), whole_3d)
    one_vs_all = bev_intersection_aligned(a, b[:1].expand(40, 7))
    torch.testing.assert_close(one_vs_all, bev_intersection_aligned(b[:1].expand(40, 7), a))


# ----------------------------------------------------------------------------- 3D IoU

def test_iou_3d_matches_shapely_bev_times_z_overlap():
    gen = torch.Generator().manual_seed(10)
    a, b = random_boxes(15, gen), random_boxes(18, gen)
    expected = torch.zeros(15, 18, dtype=torch.float64)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            inter = polygon(x).intersection(polygon(y)).area * z_overlap(x, y)
            vol_x, vol_y = float(x[3] * x[4] * x[5]), float(y[3] * y[4] * y[5])
            expected[i, j] = inter / (vol_x + vol_y - inter)
    assert (expected > 0).sum() > 30
    got = iou_3d(a, b)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(iou_3d_aligned(a, b[:15]), got.diagonal())
    torch.testing.assert_close(iou_3d(a.float(), b.float()).double(), expected, atol=1e-4, rtol=0)


def test_iou_3d_of_stacked_boxes_uses_vertical_overlap():
    a = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0]])
    half_up = torch.tensor([[0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 0.0]])   # shares the top half
    above = torch.tensor([[0.0, 0.0, 2.5, 2.0, 2.0, 2.0, 0.0]])
    assert iou_3d(a, half_up).item() == pytest.approx(4.0 / 12.0, abs=1e-6)
    assert iou_3d(a, above).item() == 0.0
    assert bev_iou_rotated(a, above).item() == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- gradients

def test_iou_gradients_are_finite_for_overlapping_pairs():
    gen = torch.Generator().manual_seed(11)
    a = random_boxes(64, gen, spread=1.0)
    b = a.clone() + torch.randn(64, 7, generator=gen, dtype=torch.float64) * 0.2
    b[:, 3:6] = b[:, 3:6].abs() + 0.1
    # Include the awkward cases: identical boxes and a 90-degree turned square.
    b[0] = a[0]
    a[1, 3:5] = 2.0
    b[1] = a[1]
    b[1, 6] += math.pi / 2
    a, b = a.float().requires_grad_(), b.float().requires_grad_()
    loss = (1 - iou_3d_aligned(a, b)).sum() + (1 - bev_iou_rotated_aligned(a, b)).sum()
    loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert a.grad[:, :2].abs().sum() > 0 and a.grad[:, 6].abs().sum() > 0


def test_iou_gradient_matches_finite_differences():
    a = torch.tensor([[0.1, -0.2, 0.0, 4.0, 2.0, 1.5, 0.3],
                      [5.0, 5.0, 1.0, 1.0, 0.8, 1.8, -2.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.9, 0.4, 0.3, 3.5, 1.7, 1.6, 0.9],
                      [5.3, 4.8, 0.9, 0.9, 0.9, 1.7, -1.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(iou_3d_aligned, (a, b))
    assert torch.autograd.gradcheck(lambda x, y: bev_iou_rotated(x, y), (a, b))


def test_benchmark_smoke_case_agrees_with_shapely_reference():
    from interlace.benchmarks.ops_boxes import CASES

    case = {c.name: c for c in CASES}["bev_iou_rotated"]
    prepared = case.setup("smoke")
    torch.testing.assert_close(prepared.ours().double(), prepared.reference(), atol=1e-4, rtol=0)
