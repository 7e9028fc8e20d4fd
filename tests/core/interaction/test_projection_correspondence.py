"""ProjectionCorrespondence: hand-computed projections, augmentation undone, features
recovered at the projected / lifted positions, box footprints, rays, absent streams."""
from __future__ import annotations

import math

import pytest
import torch

from interlace.core.engine.registry import TASK_UTILS
from interlace.core.interaction.correspondence import Footprint
from interlace.core.interaction.projection_correspondence import ProjectionCorrespondence
from interlace.core.interaction.streams import StreamFeatures

# fx = fy = 100, cx = 50, cy = 40; image 100 x 80 (W x H).
K4 = torch.tensor([[100., 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
# Rows = camera axes in LiDAR coordinates (x right, y down, z forward).
FRONT = torch.tensor([[0., -1, 0], [0, 0, -1], [1, 0, 0]])  # looks along +x
LEFT = torch.tensor([[1., 0, 0], [0, 0, -1], [0, 1, 0]])    # looks along +y
IMAGE = (80, 100)
BEV = (-40.0, -40.0, 40.0, 40.0)  # 80 x 80 cells of 1 m
H0, W0 = 20, 25                   # stride-4 image features


def lidar2img(rot: torch.Tensor, centre=(0.0, 0.0, 0.0)) -> torch.Tensor:
    ext = torch.eye(4)
    ext[:3, :3] = rot
    ext[:3, 3] = -rot @ torch.tensor(centre)
    return K4 @ ext


def two_cameras(batch: int = 1) -> torch.Tensor:
    return torch.stack([lidar2img(FRONT), lidar2img(LEFT)]).expand(batch, 2, 4, 4).clone()


def bev_aug_matrix(angle: float, flip_y: bool, scale: float, shift) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    m = torch.eye(4)
    m[:2, :2] = torch.tensor([[c, -s], [s, c]])
    if flip_y:
        m = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0])) @ m
    m[:3, :3] *= scale
    m[:3, 3] = torch.tensor(shift)
    return m


def image_pattern(batch: int, views: int, h: int = H0, w: int = W0) -> torch.Tensor:
    """(B*V, 3, h, w): channel 0 = column, 1 = row, 2 = view index."""
    rows = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    maps = [torch.stack([cols, rows, torch.full_like(rows, v)]) for _ in range(batch)
            for v in range(views)]
    return torch.stack(maps)


def bev_metric_map(batch: int, n: int = 80) -> torch.Tensor:
    """(B, 2, n, n): channels = metric x and y of each cell centre (linear in position)."""
    centres = BEV[0] + (torch.arange(n, dtype=torch.float32) + 0.5) * (BEV[2] - BEV[0]) / n
    x = centres.view(1, n).expand(n, n)
    y = centres.view(n, 1).expand(n, n)
    return torch.stack([x, y]).expand(batch, 2, n, n).clone()


def bev_cell(xy: torch.Tensor) -> torch.Tensor:
    return (torch.floor(xy[..., 1] - BEV[1]) * 80 + torch.floor(xy[..., 0] - BEV[0])).long()


def test_points_project_to_hand_computed_pixels_and_invalid_ones_are_flagged():
    corr = ProjectionCorrespondence(lidar2img(FRONT).view(1, 1, 4, 4), IMAGE, BEV)
    pts = torch.tensor([[[10., 2, 1], [20, -5, 0], [10, 0, 0], [-5, 0, 0], [10, -8, 0]]])
    pix, depth, valid = corr.project_points(pts)
    # u = 50 - 100 y / x, v = 40 - 100 z / x, depth = x.
    assert torch.allclose(pix[0, 0, :3], torch.tensor([[30., 30], [75, 40], [50, 40]]), atol=1e-4)
    assert torch.allclose(depth[0, 0, :3], torch.tensor([10., 20, 10]))
    assert valid[0, 0].tolist() == [True, True, True, False, False]  # behind, right of image
    assert depth[0, 0, 3] < 0 and pix[0, 0, 4, 0] > 100


@pytest.mark.parametrize("aug_4x4", [False, True])
def test_image_and_bev_augmentations_are_undone(aug_4x4):
    pts = torch.tensor([[[10., 2, 1], [20, -5, 0.5], [12, 3, -1], [8, 1, 0]]])
    plain = ProjectionCorrespondence(lidar2img(FRONT).view(1, 1, 4, 4), IMAGE, BEV)
    pix0, depth0, _ = plain.project_points(pts)
    # Resize x0.5 then horizontal flip of the 50-pixel-wide result.
    img_aug = torch.tensor([[-0.5, 0, 50], [0, 0.5, 0], [0, 0, 1]])
    if aug_4x4:
        img_aug = torch.tensor([[-0.5, 0, 0, 50], [0, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    bev_aug = bev_aug_matrix(0.5, True, 1.1, (1.0, -2.0, 0.3))
    corr = ProjectionCorrespondence(lidar2img(FRONT).view(1, 1, 4, 4), (40, 50), BEV,
                                    img_aug=img_aug.view(1, 1, *img_aug.shape),
                                    bev_aug=bev_aug.view(1, 4, 4))
    current = (bev_aug[:3, :3] @ pts[0].T).T + bev_aug[:3, 3]
    pix, depth, valid = corr.project_points(current[None])
    expect = torch.stack([50 - 0.5 * pix0[..., 0], 0.5 * pix0[..., 1]], -1)
    assert torch.allclose(pix, expect, atol=1e-3)
    assert torch.allclose(depth, depth0, atol=1e-4)
    assert valid.all()
    back = corr.unproject_pixels(pix, depth)
    assert torch.allclose(back[0, 0], current, atol=1e-4)


def test_gather_b_for_a_recovers_the_image_pattern_at_projected_points():
    corr0 = ProjectionCorrespondence(two_cameras(), IMAGE, BEV)
    # Points on feature-pixel centres (stride 4) of each view, lifted at known depths.
    targets = [(0, 5, 3, 10.0), (0, 10, 12, 20.0), (0, 15, 20, 7.0), (1, 4, 6, 9.0),
               (1, 12, 18, 15.0)]
    pixels = torch.zeros(1, 2, len(targets), 2)
    depth = torch.ones(1, 2, len(targets))
    for k, (v, i, j, d) in enumerate(targets):
        pixels[0, v, k] = torch.tensor([(j + 0.5) * 4, (i + 0.5) * 4])
        depth[0, v, k] = d
    lifted = corr0.unproject_pixels(pixels, depth)
    points = torch.stack([lifted[0, v, k] for k, (v, *_rest) in enumerate(targets)])
    cells = bev_cell(points[:, :2])
    assert cells.unique().numel() == len(targets)
    corr = ProjectionCorrespondence(two_cameras(), IMAGE, BEV, pillar_points=[points])
    a = StreamFeatures(levels=[torch.randn(1, 8, 80, 80), torch.randn(1, 8, 40, 40)])
    b = StreamFeatures(levels=[image_pattern(1, 2)], num_views=2)
    got = corr.gather_b_for_a(a, b)
    assert got.num_queries_per_sample == 80 * 80 + 40 * 40
    assert got.key_position.shape == (got.num_pairs, 4)
    assert (got.query_index < 80 * 80).all()  # only the first BEV level is served
    for k, (v, i, j, d) in enumerate(targets):
        mine = (got.query_index == cells[k]) & (got.key_position[:, 3] * 2 == v)
        assert int(mine.sum()) == 1
        assert torch.allclose(got.values[mine][0], torch.tensor([j, i, v], dtype=torch.float32),
                              atol=1e-3)
        assert torch.isclose(got.key_position[mine][0, 2], torch.tensor(d / 61.0), atol=1e-4)
    # Every pair, including a view that happens to see another view's point, is consistent.
    assert torch.allclose(got.values[:, 0], got.key_position[:, 0] * W0 - 0.5, atol=1e-3)
    assert torch.allclose(got.values[:, 1], got.key_position[:, 1] * H0 - 0.5, atol=1e-3)


def test_gather_b_for_a_keeps_the_first_points_of_a_crowded_pillar():
    pts = torch.tensor([[10.1 + 0.1 * k, 0.2, 0.0] for k in range(6)])  # one 1 m cell
    corr = ProjectionCorrespondence(two_cameras(), IMAGE, BEV, pillar_points=[pts],
                                    max_points_per_pillar=4)
    a = StreamFeatures(levels=[torch.randn(1, 8, 80, 80)])
    b = StreamFeatures(levels=[image_pattern(1, 2)], num_views=2)
    got = corr.gather_b_for_a(a, b)
    assert got.keys_per_query().sum() == 4
    assert got.query_index.unique().tolist() == [int(bev_cell(pts[0, :2]))]
    # The kept ones are the first four: depths 10.1 .. 10.4.
    kept = (got.key_position[:, 2] * 61.0).sort().values
    assert torch.allclose(kept, torch.tensor([10.1, 10.2, 10.3, 10.4]), atol=1e-4)


def test_without_raw_points_cells_sample_at_virtual_heights_or_fail_clearly():
    a = StreamFeatures(levels=[torch.randn(1, 8, 80, 80)])
    b = StreamFeatures(levels=[image_pattern(1, 2)], num_views=2)
    with pytest.raises(ValueError, match="pillar_points"):
        ProjectionCorrespondence(two_cameras(), IMAGE, BEV).gather_b_for_a(a, b)
    corr = ProjectionCorrespondence(two_cameras(), IMAGE, BEV, z_range=(-1.0, 1.0),
                                    pillar_heights=3)
    counts = corr.gather_b_for_a(a, b).keys_per_query().view(80, 80)
    # Cell (x 20..21, y 0..1) is ahead of the front camera: its 3 heights all project.
    assert counts[40, 60] == 3
    assert counts[40, 20] == 0  # behind both cameras
    assert counts.max() == 3


def test_gather_a_for_b_samples_the_bev_at_the_lifted_pixels():
    depth = torch.zeros(1, 2, H0, W0)
    depth[0, 0] = 10.0             # view 0: a wall at 10 m
    depth[0, 1, 2:5, 3:7] = 12.0   # view 1: only a patch has depth
    corr = ProjectionCorrespondence(two_cameras(), IMAGE, BEV, pixel_depth=depth)
    a = StreamFeatures(levels=[bev_metric_map(1)])
    b = StreamFeatures(levels=[torch.randn(2, 4, H0, W0), torch.randn(2, 4, 10, 13)], num_views=2)
    got = corr.gather_a_for_b(a, b)
    per_view = H0 * W0 + 10 * 13
    assert got.num_queries_per_sample == 2 * per_view
    view = got.query_index // per_view
    assert int((view == 0).sum()) == per_view                 # all of view 0, both levels
    assert int((view == 1).sum()) == 3 * 4 + 1 * 2            # the patch, plus level 1's share
    # Expected metric xy of each lifted query, recomputed independently.
    ref = b.reference_points()[got.query_index % per_view] * torch.tensor([100.0, 80.0])
    d = torch.where(view == 0, torch.tensor(10.0), torch.tensor(12.0))
    cams = torch.stack([FRONT, LEFT])[view]                   # (P, 3, 3)
    ray = torch.stack([(ref[:, 0] - 50) / 100, (ref[:, 1] - 40) / 100, torch.ones_like(d)], -1)
    xyz = torch.einsum("pji,pj->pi", cams, ray * d[:, None])  # camera -> lidar: R^T
    assert torch.allclose(got.values, xyz[:, :2], atol=1e-3)
    assert torch.allclose(got.key_position, (xyz[:, :2] + 40) / 80, atol=1e-5)


@pytest.mark.parametrize("iterations,width", [(1, 3), (3, 7)])
def test_pixel_depth_is_built_from_points_and_densified(iterations, width):
    pts = torch.tensor([[10.0, 0.0, 0.0]])  # projects to (50, 40) -> stride-4 pixel (10, 12)
    corr = ProjectionCorrespondence(two_cameras(), IMAGE, BEV, pillar_points=[pts],
                                    densify_iterations=iterations)
    b = StreamFeatures(levels=[torch.randn(2, 4, H0, W0)], num_views=2)
    depth = corr.pixel_depth_for(b)
    assert depth.shape == (1, 2, H0, W0)
    half = width // 2
    expect = torch.zeros(H0, W0)
    expect[10 - half:10 + half + 1, 12 - half:12 + half + 1] = 10.0
    assert torch.equal(depth[0, 0], expect)
    assert not depth[0, 1].any()  # the left camera does not see the point


def footprint_at(xy_metres, size=(4.0, 2.0), batch: int = 1) -> Footprint:
    centre = (torch.tensor(xy_metres, dtype=torch.float32) + 40) / 80   # (Q, 2)
    q = centre.shape[0]
    return Footprint(center=centre.expand(batch, q, 2).clone(),
                     size=(torch.tensor(size) / 80).expand(batch, q, 2).clone(),
                     yaw=torch.zeros(batch, q), z=torch.zeros(batch, q),
                     height=torch.full((batch, q), 1.5))


def test_gather_footprint_uses_only_the_views_that_see_the_box():
    corr = ProjectionCorrespondence(two_cameras(), IMAGE, BEV)
    b = StreamFeatures(levels=[image_pattern(1, 2)], num_views=2)
    fp = footprint_at([[15.0, 0.0], [-15.0, 0.0], [0.0, 15.0]])   # front, behind all, left
    got = corr.gather_footprint(fp, b, grid_size=7)
    views = (got.key_position[:, 3] * 2).round().long()
    assert got.keys_per_query()[0].tolist() == [49, 0, 49]
    assert views[got.query_index == 0].unique().tolist() == [0]
    assert views[got.query_index == 2].unique().tolist() == [1]
    assert torch.equal(got.values[:, 2].round().long(), views)
    # Front box: corners x in {13, 17}, y in {-1, 1}, z in {-0.75, 0.75}; u = 50 - 100y/x.
    lo = torch.tensor([50 - 100 / 13, 40 - 75 / 13])
    hi = torch.tensor([50 + 100 / 13, 40 + 75 / 13])
    uv = got.key_position[got.query_index == 0, :2] * torch.tensor([100.0, 80.0])
    assert torch.allclose(uv.min(0).values, lo + (hi - lo) / 14, atol=1e-3)
    assert torch.allclose(uv.max(0).values, hi - (hi - lo) / 14, atol=1e-3)


def test_gather_footprint_requires_heights():
    corr = ProjectionCorrespondence(two_cameras(), IMAGE, BEV)
    fp = footprint_at([[15.0, 0.0]])
    fp.z = None
    with pytest.raises(ValueError, match="z"):
        corr.gather_footprint(fp, StreamFeatures(levels=[image_pattern(1, 2)], num_views=2))


def test_ray_samples_are_collinear_with_the_camera_and_move_away():
    centre = torch.tensor([1.0, 0.5, 1.5])
    bev_aug = bev_aug_matrix(0.35, False, 1.0, (2.0, -1.0, 0.0))
    corr = ProjectionCorrespondence(lidar2img(FRONT, centre.tolist()).view(1, 1, 4, 4), IMAGE, BEV,
                                    bev_aug=bev_aug.view(1, 4, 4))
    a = StreamFeatures(levels=[torch.randn(1, 4, 80, 80)])
    b = StreamFeatures(levels=[torch.randn(1, 4, H0, W0)])
    layout = corr.ray_layout(a, b)
    assert layout.level == 0
    assert layout.a_points.shape == (1, 1, W0, 60, 2) and layout.valid.shape == (1, 1, W0, 60)
    cam = (bev_aug[:2, :3] @ centre + bev_aug[:2, 3])                   # current frame
    xy = layout.a_points[0, 0] * 80 - 40                                 # (W, D, 2) metres
    rel = xy - cam
    cross = rel[..., 0] * rel[:, -1:, 1] - rel[..., 1] * rel[:, -1:, 0]
    assert cross.abs().max() < 1e-2 * rel.norm(dim=-1).max()
    assert (rel.norm(dim=-1).diff(dim=1) > 0).all()
    # Near samples are on the map, far ones (61 m > 40 m) leave it, and never come back.
    assert layout.valid[..., 0].all() and not layout.valid[..., -1].any()
    assert (layout.valid.long().diff(dim=-1) <= 0).all()


def test_absent_streams_give_no_pairs():
    pts = [torch.tensor([[10.0, 0.5, 0.0], [12.0, -1.0, 0.5]])] * 3
    corr = ProjectionCorrespondence(two_cameras(3), IMAGE, BEV, pillar_points=pts)
    a = StreamFeatures(levels=[bev_metric_map(3)], present=torch.tensor([True, True, False]))
    b = StreamFeatures(levels=[image_pattern(3, 2)], num_views=2,
                       present=torch.tensor([True, False, True]))
    for got, n in ((corr.gather_b_for_a(a, b), a.num_queries),
                   (corr.gather_a_for_b(a, b), b.num_queries)):
        assert got.num_pairs > 0
        assert (got.query_index < n).all()  # only sample 0 has both streams
    fp = footprint_at([[15.0, 0.0]], batch=3)
    assert corr.gather_footprint(fp, b).keys_per_query()[:, 0].tolist() == [49, 0, 49]
    valid = corr.ray_layout(a, b).valid
    assert valid[0].any() and not valid[1:].any()


def test_registered_for_configs():
    assert TASK_UTILS.get("ProjectionCorrespondence") is ProjectionCorrespondence
