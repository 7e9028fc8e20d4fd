"""The LiDAR stream: mean voxel features, sparse encoder -> BEV, SECOND + FPN, pillar grid.

Sparse-conv tests use points clustered on a few object-sized patches, as real sweeps are:
uniformly scattered points make every strided sparse conv multiply the active sites
(each isolated site spawns up to 8), which is unrealistic and slow on CPU.
"""
from __future__ import annotations

import time

import pytest
import torch

from interlace.core.engine.registry import MODELS
from interlace.core.interaction import ProjectionCorrespondence
from interlace.core.ops.sparse_conv import SPCONV_AVAILABLE
from interlace.domains.driving.models.data_preprocessor import DrivingDataPreprocessor
from interlace.domains.driving.models.lidar import (SECONDFPN, MeanVoxelEncoder, PillarPointGrid,
                                                    SECONDBackbone, SparseEncoderSECOND)

needs_spconv = pytest.mark.skipif(not SPCONV_AVAILABLE, reason="spconv not installed")


# A small encoder: the paper's stage layout with 4x fewer channels.
TINY = dict(in_channels=5, sparse_shape=[41, 64, 64], base_channels=4, output_channels=8,
            encoder_channels=((4, 4, 8), (8, 8, 16), (16, 16, 32), (32, 32)))


def clustered_voxels(num: int, shape: tuple[int, int, int], batch: int = 1, clusters: int = 4,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct (batch, z, y, x) voxel coords around a few centres, and (N, 5) features."""
    g = torch.Generator().manual_seed(seed)
    d, h, w = shape
    size = torch.tensor([d, h, w])
    centres = (torch.rand(batch * clusters, 3, generator=g) * (size - 8) + 4).long()
    pick = torch.randint(0, batch * clusters, (num,), generator=g)
    offset = torch.randint(-3, 4, (num, 3), generator=g)
    zyx = torch.minimum(torch.maximum(centres[pick] + offset, torch.zeros(3).long()), size - 1)
    coors = torch.unique(torch.cat([(pick // clusters).unsqueeze(1), zyx], 1), dim=0).int()
    return coors, torch.randn(coors.shape[0], 5, generator=g)


# --- MeanVoxelEncoder -----------------------------------------------------------------
def test_mean_voxel_encoder_averages_only_the_real_points():
    voxels = torch.tensor([[[1., 2., 3., 4., 5.], [3., 4., 5., 6., 7.], [99., 99., 99., 99., 99.]],
                           [[0., 0., 0., 1., 0.], [3., 3., 3., 1., 0.], [6., 0., 0., 1., 0.3]]])
    num_points = torch.tensor([2, 3], dtype=torch.int32)
    got = MeanVoxelEncoder(num_features=5)(voxels, num_points)
    # Voxel 0 has garbage in its padding slot: it must not leak into the mean.
    expect = torch.tensor([[2., 3., 4., 5., 6.], [3., 1., 1., 1., 0.1]])
    assert torch.allclose(got, expect)
    assert MeanVoxelEncoder(num_features=3)(voxels, num_points).shape == (2, 3)


def test_mean_voxel_encoder_rejects_more_features_than_the_points_have():
    with pytest.raises(ValueError, match="num_features=6"):
        MeanVoxelEncoder(num_features=6)(torch.zeros(1, 10, 5), torch.ones(1, dtype=torch.int32))


# --- SparseEncoderSECOND ----------------------------------------------------------------
@needs_spconv
def test_sparse_encoder_tiny_config_flattens_height_into_channels():
    enc = SparseEncoderSECOND(**TINY).eval()
    # z 41 -> 21 -> 11 -> 5 (no z padding in stage 3) -> conv_out 2; xy 64 -> 32 -> 16 -> 8.
    assert enc.bev_channels == 8 * 2 and enc.bev_shape == (8, 8)
    coors, feats = clustered_voxels(150, (40, 64, 64), batch=2)
    with torch.no_grad():
        bev = enc(feats, coors, batch_size=2)
    assert bev.shape == (2, 16, 8, 8)
    assert bev[0].abs().sum() > 0 and bev[1].abs().sum() > 0


@needs_spconv
def test_sparse_encoder_puts_a_voxel_in_its_own_sample_and_bev_cell():
    enc = SparseEncoderSECOND(**TINY).eval()
    coors = torch.tensor([[1, 20, 40, 9]], dtype=torch.int32)  # sample 1, y 40, x 9
    with torch.no_grad():
        bev = enc(torch.ones(1, 5), coors, batch_size=2)
    assert bev[0].abs().sum() == 0  # sample 0 has no voxel: an all-zero map
    rows, cols = bev[1].abs().sum(0).nonzero(as_tuple=True)
    # Three 3x3 stride-2 convs spread a site over neighbouring cells; stride 8 -> cell 5, 1.
    assert rows.numel() > 0
    assert set(rows.tolist()) <= {4, 5, 6} and set(cols.tolist()) <= {0, 1, 2}


@needs_spconv
def test_sparse_encoder_backward_reaches_voxel_features_and_every_weight_on_cpu():
    enc = SparseEncoderSECOND(**TINY).train()
    coors, feats = clustered_voxels(150, (40, 64, 64), batch=2, seed=1)
    feats.requires_grad_(True)
    enc(feats, coors, batch_size=2).square().mean().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    weights = [(n, p) for n, p in enc.named_parameters() if n.endswith("weight")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in weights), \
        [n for n, p in weights if p.grad is None or p.grad.abs().sum() == 0]


@needs_spconv
def test_sparse_encoder_without_voxels_returns_zero_maps():
    enc = SparseEncoderSECOND(**TINY)
    bev = enc(torch.zeros(0, 5), torch.zeros(0, 4, dtype=torch.int32), batch_size=3)
    assert bev.shape == (3, 16, 8, 8) and not bev.any()


@needs_spconv
def test_sparse_encoder_conv_module_layout_and_parameter_names():
    # mmdet3d's SECOND layout: plain SubM blocks, each later stage opened by a strided conv.
    enc = SparseEncoderSECOND(in_channels=4, sparse_shape=[41, 32, 32], base_channels=4,
                              output_channels=8, encoder_channels=((4,), (8, 8), (8, 8), (8, 8)),
                              encoder_paddings=((1,), (1, 1), (1, 1), ((0, 1, 1), 1)),
                              block_type="conv_module").eval()
    assert enc.bev_shape == (4, 4) and enc.bev_channels == 16
    coors, feats = clustered_voxels(60, (40, 32, 32), seed=2)
    with torch.no_grad():
        assert enc(feats[:, :4], coors, 1).shape == (1, 16, 4, 4)
    names = set(SparseEncoderSECOND(**TINY).state_dict())
    # TransFusion-L checkpoint keys (mmdet3d naming).
    assert {"conv_input.0.weight", "encoder_layers.encoder_layer1.0.conv1.weight",
            "encoder_layers.encoder_layer1.0.bn2.running_var",
            "encoder_layers.encoder_layer3.2.0.weight", "conv_out.1.bias"} <= names


@needs_spconv
def test_sparse_encoder_rejects_a_grid_too_small_for_its_stages():
    with pytest.raises(ValueError, match="too small"):
        SparseEncoderSECOND(**{**TINY, "sparse_shape": [5, 64, 64]})


# --- SECONDBackbone + SECONDFPN ---------------------------------------------------------
def test_second_backbone_and_fpn_bring_both_stages_to_one_map():
    backbone = SECONDBackbone(in_channels=16, out_channels=(8, 16), layer_nums=(2, 2),
                              layer_strides=(1, 2))
    neck = SECONDFPN(in_channels=(8, 16), out_channels=(12, 12), upsample_strides=(1, 2))
    x = torch.randn(2, 16, 24, 20, requires_grad=True)
    stages = backbone(x)
    assert [tuple(s.shape) for s in stages] == [(2, 8, 24, 20), (2, 16, 12, 10)]
    # 1 conv + 2 extra layers per stage, each conv + BN + ReLU.
    assert len(backbone.blocks[0]) == 9
    out = neck(stages)
    assert isinstance(out, list) and len(out) == 1
    assert out[0].shape == (2, 24, 24, 20) and neck.bev_channels == 24
    out[0].mean().backward()
    assert x.grad.abs().sum() > 0


def test_fpn_downsamples_with_a_fractional_stride_and_rejects_misaligned_stages():
    neck = SECONDFPN(in_channels=(4, 4), out_channels=(4, 4), upsample_strides=(0.5, 1))
    assert neck([torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)])[0].shape == (1, 8, 4, 4)
    with pytest.raises(ValueError, match="different sizes"):
        neck([torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)])


def test_lidar_stream_parts_build_from_the_registry():
    enc = MODELS.build(dict(type="SECONDBackbone", in_channels=8, out_channels=(4,),
                            layer_nums=(1,), layer_strides=(2,)))
    assert enc(torch.randn(1, 8, 6, 6))[0].shape == (1, 4, 3, 3)
    grid = MODELS.build(dict(type="PillarPointGrid"))
    assert grid.grid_shape == (180, 180)


def clustered_points(num: int, half_range: float, seed: int = 0) -> torch.Tensor:
    """(num, 5) points on a few car-sized patches inside +-half_range metres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.cat([(torch.rand(5, 2, generator=g) * 1.6 - 0.8) * half_range,
                         torch.zeros(5, 1)], 1)
    xyz = (centres[torch.randint(0, 5, (num,), generator=g)]
           + torch.randn(num, 3, generator=g) * torch.tensor([1.0, 0.5, 0.5]))
    return torch.cat([xyz, torch.rand(num, 2, generator=g)], 1)


@needs_spconv
def test_tiny_stream_runs_from_the_preprocessor_output_and_trains():
    # 0.4 m voxels over +-12.8 m: a 64 x 64 x 40 grid, the TINY sparse shape.
    pre = DrivingDataPreprocessor(voxel_layer=dict(
        voxel_size=[0.4, 0.4, 0.2], point_cloud_range=[-12.8, -12.8, -5.0, 12.8, 12.8, 3.0]))
    batch = pre(dict(inputs=dict(points=[clustered_points(300, 12.8, seed=s) for s in (0, 1)])),
                training=True)
    vox = batch["inputs"]["voxels"]
    enc = SparseEncoderSECOND(**TINY)
    backbone = SECONDBackbone(in_channels=16, out_channels=(8, 16), layer_nums=(1, 1),
                              layer_strides=(1, 2))
    neck = SECONDFPN(in_channels=(8, 16), out_channels=(8, 8), upsample_strides=(1, 2))
    feats = MeanVoxelEncoder()(vox["voxels"], vox["num_points"], vox["coors"])
    bev = neck(backbone(enc(feats, vox["coors"], batch_size=2)))[0]
    assert bev.shape == (2, 16, 8, 8)
    bev.mean().backward()
    assert enc.conv_input[0].weight.grad.abs().sum() > 0


# --- PillarPointGrid ------------------------------------------------------------------
def test_pillar_grid_keeps_the_first_20_points_of_a_crowded_pillar():
    grid = PillarPointGrid()  # 0.6 m pillars over [-54, 54] m: 180 x 180
    crowd = torch.tensor([[0.05 + 0.02 * k, 0.1, 0.0, float(k), 0.0] for k in range(25)])
    lone = torch.tensor([[-53.9, 53.9, 1.0, 100.0, 0.0]])
    kept, cell = grid.group(torch.cat([crowd, lone]))
    assert kept.shape == (21, 5)
    # Pillar of (0.05..0.53, 0.1): col = row = floor(54 / 0.6) = 90; the lone point's is
    # col 0, row floor(107.9 / 0.6) = 179.
    assert cell.tolist() == [90 * 180 + 90] * 20 + [179 * 180 + 0]
    assert kept[:20, 3].tolist() == [float(k) for k in range(20)]  # the first 20, in order


def test_pillar_grid_drops_points_outside_the_range_and_handles_empty_clouds():
    grid = PillarPointGrid(max_points_per_pillar=20)
    pts = torch.tensor([[54.0, 0.0, 0.0], [0.0, -54.01, 0.0], [0.0, 0.0, 3.0],
                        [0.0, 0.0, -5.5], [float("nan"), 0.0, 0.0], [53.99, -54.0, -5.0]])
    kept, cell = grid.group(pts)
    assert torch.equal(kept, pts[5:]) and cell.tolist() == [179]
    out = grid([pts, torch.zeros(0, 5)])
    assert len(out) == 2 and out[1].shape == (0, 5)


def test_pillar_grid_output_is_what_the_projection_correspondence_groups():
    grid = PillarPointGrid(point_cloud_range=(-6.0, -6.0, -5.0, 6.0, 6.0, 3.0),
                           max_points_per_pillar=3)
    g = torch.Generator().manual_seed(0)
    # Many points on pillar borders (multiples of 0.6 m), where rounding could disagree.
    pts = torch.cat([torch.randint(-10, 10, (400, 2), generator=g) * 0.6,
                     torch.rand(400, 1, generator=g), torch.rand(400, 2, generator=g)], 1)
    pillars = grid([pts])
    corr = ProjectionCorrespondence(torch.eye(4).expand(1, 1, 4, 4), (32, 32), grid.bev_range,
                                    pillar_points=pillars, max_points_per_pillar=3)
    used, cell = corr._pillars(0, *grid.grid_shape, torch.device("cpu"))
    _, own_cell = grid.group(pts)
    assert used.shape[0] == pillars[0].shape[0]  # the correspondence drops nothing more
    assert torch.equal(cell, own_cell)
    assert torch.bincount(own_cell).max() <= 3


def test_pillar_grid_rejects_a_range_that_is_not_whole_pillars():
    with pytest.raises(ValueError, match="whole number"):
        PillarPointGrid(point_cloud_range=(-54, -54, -5, 54, 54, 3), pillar_size=(0.7, 0.7))


# --- the paper's scale ----------------------------------------------------------------
@needs_spconv
@pytest.mark.slow
def test_paper_scale_stream_gives_a_180_by_180_bev_and_trains():
    g = torch.Generator().manual_seed(0)
    centres = torch.cat([torch.rand(20, 2, generator=g) * 90 - 45, torch.zeros(20, 1)], 1)
    n = 3000
    xyz = (centres[torch.randint(0, 20, (n,), generator=g)]
           + torch.randn(n, 3, generator=g) * torch.tensor([1.0, 0.5, 0.5]))
    pts = torch.cat([xyz, torch.rand(n, 2, generator=g)], 1)
    batch = DrivingDataPreprocessor()(dict(inputs=dict(points=[pts])), training=True)
    vox = batch["inputs"]["voxels"]
    vfe, enc = MeanVoxelEncoder(), SparseEncoderSECOND()
    backbone, neck = SECONDBackbone(), SECONDFPN()
    assert enc.bev_shape == (180, 180) and enc.bev_channels == 256
    start = time.perf_counter()
    feats = vfe(vox["voxels"], vox["num_points"]).requires_grad_(True)
    bev = enc(feats, vox["coors"], batch_size=1)
    assert bev.shape == (1, 256, 180, 180)
    stages = backbone(bev)
    assert [tuple(s.shape) for s in stages] == [(1, 128, 180, 180), (1, 256, 90, 90)]
    out = neck(stages)[0]
    assert out.shape == (1, 512, 180, 180)
    out.square().mean().backward()
    print(f"paper-scale LiDAR stream forward+backward on {vox['voxels'].shape[0]} voxels: "
          f"{time.perf_counter() - start:.1f} s")
    assert feats.grad.abs().sum() > 0


def test_sparse_encoder_runs_in_fp32_under_cpu_bf16_autocast():
    """spconv has no CPU bf16 kernels; the encoder must not fail inside autocast."""
    import torch

    from interlace.domains.driving.models.lidar import SparseEncoderSECOND

    torch.manual_seed(0)
    encoder = SparseEncoderSECOND(in_channels=5, sparse_shape=[41, 64, 64]).eval()
    coors = torch.tensor([[0, 20, 30, 30], [0, 21, 31, 30], [0, 20, 32, 33]], dtype=torch.int32)
    feats = torch.randn(3, 5)
    with torch.no_grad():
        reference = encoder(feats, coors, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = encoder(feats, coors, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference)
