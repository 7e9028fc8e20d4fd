"""Voxel features the sparse encoder sees: the raw mean stays bit for bit what it was, the
per-channel normalisation gives hand-computed numbers, dynamic voxels keep every point,
and gradients reach the first conv through every path."""
from __future__ import annotations

import pytest
import torch

from interlace.core.engine.registry import MODELS
from interlace.core.ops.sparse_conv import SPCONV_AVAILABLE
from interlace.core.ops.voxelize import mean_voxel_features, voxelize_hard
from interlace.domains.driving.models.data_preprocessor import DrivingDataPreprocessor
from interlace.domains.driving.models.detectors.lidar_bev_encoder import LidarBEVEncoder
from interlace.domains.driving.models.lidar import (DynamicMeanVoxelEncoder, MeanVoxelEncoder,
                                                    point_feature_normalization)

needs_spconv = pytest.mark.skipif(not SPCONV_AVAILABLE, reason="spconv not installed")

TINY_RANGE = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
TINY_VOXEL = [0.4, 0.4, 0.2]


def sweep_cloud(num: int = 4000, seed: int = 0) -> torch.Tensor:
    """(num, 5) points on a few car-sized patches, a quarter key frame (lag 0) first, then
    three sweeps (lags 0.05, 0.1, 0.15 s), the order the loaders produce."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[10.0, 5.0, -1.0], [-20.0, 3.0, -1.0], [4.0, -30.0, -1.0]])
    xyz = (centres[torch.randint(0, 3, (num,), generator=g)]
           + torch.randn(num, 3, generator=g) * torch.tensor([1.5, 0.8, 0.5]))
    intensity = torch.rand(num, 1, generator=g) * 60
    lag = (torch.arange(num) * 4 // num).float().unsqueeze(1) * 0.05
    return torch.cat([xyz, intensity, lag], 1)


# --- without the options: bitwise as before --------------------------------------------
def test_encoder_without_options_gives_bitwise_the_raw_means_of_the_tiny_voxels():
    points = sweep_cloud()
    voxels, _, num_points = voxelize_hard(points, TINY_VOXEL, TINY_RANGE, 10, 40000)
    for encoder in (MeanVoxelEncoder(num_features=5),
                    MODELS.build(dict(type="MeanVoxelEncoder", num_features=5))):
        # What MeanVoxelEncoder returned before the options existed.
        assert torch.equal(encoder(voxels, num_points),
                           mean_voxel_features(voxels[:, :, :5], num_points))
    pre = DrivingDataPreprocessor(use_images=False, voxel_layer=dict(
        max_num_points=10, point_cloud_range=TINY_RANGE, voxel_size=TINY_VOXEL,
        max_voxels=(40000, 40000)))
    assert torch.equal(pre.voxelize([points], training=False)["voxels"], voxels)


def test_normalisation_constants_stay_out_of_checkpoints():
    plain = MeanVoxelEncoder()
    normalised = MeanVoxelEncoder(**point_feature_normalization(TINY_RANGE, 10))
    assert normalised.state_dict() == {}
    normalised.load_state_dict(plain.state_dict(), strict=True)
    assert "feature_scale" in repr(normalised) and "feature_scale" not in repr(plain)


# --- normalisation numbers -------------------------------------------------------------
def test_normalisation_constants_follow_the_range_and_the_sweep_window():
    norm = point_feature_normalization(TINY_RANGE, sweeps_num=10)
    assert norm["feature_offset"] == [0.0, 0.0, -1.0, 127.5, 0.0]
    assert norm["feature_scale"] == pytest.approx([51.2, 51.2, 4.0, 127.5, 0.5])
    # 3 sweeps at 20 Hz: the oldest lag is 0.15 s.
    three = point_feature_normalization(TINY_RANGE, sweeps_num=3, intensity_range=(0, 100))
    assert three["feature_offset"][3] == 50.0
    assert three["feature_scale"][3:] == pytest.approx([50.0, 0.15])
    assert point_feature_normalization(TINY_RANGE, sweeps_num=0)["feature_scale"][4] == 1.0


def test_normalised_mean_matches_hand_computed_values():
    # One voxel, two points: mean (25.6, -51.2, 1.0, 255, 0.25).
    voxels = torch.tensor([[[25.0, -51.0, 0.5, 255.0, 0.2], [26.2, -51.4, 1.5, 255.0, 0.3],
                            [9.0, 9.0, 9.0, 9.0, 9.0]]])
    encoder = MeanVoxelEncoder(**point_feature_normalization(TINY_RANGE, sweeps_num=10))
    got = encoder(voxels, torch.tensor([2], dtype=torch.int32))
    # x 25.6 / 51.2, y -51.2 / 51.2, z (1 + 1) / 4, i (255 - 127.5) / 127.5, lag 0.25 / 0.5
    torch.testing.assert_close(got, torch.tensor([[0.5, -1.0, 0.5, 1.0, 0.5]]))
    only_lag = MeanVoxelEncoder(feature_scale=[1, 1, 1, 1, 0.5])
    torch.testing.assert_close(only_lag(voxels, torch.tensor([2], dtype=torch.int32)),
                               torch.tensor([[25.6, -51.2, 1.0, 255.0, 0.5]]))


def test_normalisation_lifts_the_lag_to_the_spread_of_the_other_channels():
    voxels, _, num_points = voxelize_hard(sweep_cloud(), TINY_VOXEL, TINY_RANGE, 10, 40000)
    raw = MeanVoxelEncoder()(voxels, num_points).std(dim=0)
    normalised = MeanVoxelEncoder(**point_feature_normalization(TINY_RANGE, 3))(
        voxels, num_points).std(dim=0)
    assert raw[4] < raw[:4].min() / 10                    # the lag is invisible raw ...
    assert normalised[4] > normalised[:3].min()           # ... and not after


@pytest.mark.parametrize("kwargs, match", [
    (dict(feature_scale=[1, 1, 1, 1]), "feature_scale has 4 values"),
    (dict(feature_scale=[1, 1, 1, 1, 0]), "must be positive"),
    (dict(feature_offset=[0, 0, 0, 0, float("nan")]), "must be finite"),
])
def test_bad_normalisation_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MeanVoxelEncoder(**kwargs)


# --- dynamic voxels --------------------------------------------------------------------
def test_dynamic_encoder_averages_every_point_of_a_crowded_voxel():
    # 40 points in one 0.4 m voxel (hard voxelisation would keep 10), 3 in another.
    g = torch.Generator().manual_seed(0)
    crowd = torch.cat([torch.rand(40, 3, generator=g) * torch.tensor([0.3, 0.3, 0.18])
                       + torch.tensor([0.05, 0.05, 0.01]),
                       torch.rand(40, 1, generator=g) * 50, torch.full((40, 1), 0.1)], 1)
    crowd[:10, 4] = 0.0                                    # the key frame first
    other = torch.tensor([[5.1, 5.1, 0.1, 7.0, 0.0]] * 3)
    outside = torch.tensor([[60.0, 0.0, 0.0, 1.0, 0.0]])
    points = torch.cat([crowd, other, outside])
    pre = DrivingDataPreprocessor(use_images=False, voxel_layer=dict(
        max_num_points=-1, point_cloud_range=TINY_RANGE, voxel_size=TINY_VOXEL))
    voxels = pre.voxelize([points], training=True)
    assert voxels["voxels"].shape == (43, 5) and "num_points" not in voxels
    features, coors = DynamicMeanVoxelEncoder()(voxels["voxels"], None, voxels["coors"])
    assert coors.tolist() == [[0, 25, 128, 128], [0, 25, 140, 140]]
    torch.testing.assert_close(features, torch.stack([crowd.mean(0), other[0]]))
    hard = DrivingDataPreprocessor(use_images=False, voxel_layer=dict(
        max_num_points=10, point_cloud_range=TINY_RANGE, voxel_size=TINY_VOXEL))
    assert hard.voxelize([points], training=True)["num_points"].tolist() == [10, 3]


def test_dynamic_mean_does_not_depend_on_the_point_order():
    points = sweep_cloud(seed=2)
    pre = DrivingDataPreprocessor(use_images=False, voxel_layer=dict(
        max_num_points=-1, point_cloud_range=TINY_RANGE, voxel_size=TINY_VOXEL))
    encoder = DynamicMeanVoxelEncoder()
    a = encoder(**_call(pre.voxelize([points], training=False)))
    b = encoder(**_call(pre.voxelize([points.flip(0)], training=False)))
    assert torch.equal(a[1], b[1])
    torch.testing.assert_close(a[0], b[0])


def _call(voxels: dict) -> dict:
    return dict(voxels=voxels["voxels"], num_points=voxels.get("num_points"),
                coors=voxels["coors"])


def test_each_encoder_names_the_other_for_the_wrong_voxel_layout():
    with pytest.raises(ValueError, match="DynamicMeanVoxelEncoder"):
        MeanVoxelEncoder()(torch.zeros(4, 5), None, torch.zeros(4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="max_num_points=-1"):
        DynamicMeanVoxelEncoder()(torch.zeros(4, 10, 5), torch.ones(4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="max_num_points must be positive"):
        DrivingDataPreprocessor(voxel_layer=dict(max_num_points=0))


# --- gradients -------------------------------------------------------------------------
def _stream(voxel_encoder: dict) -> LidarBEVEncoder:
    return LidarBEVEncoder(
        voxel_encoder=voxel_encoder,
        middle_encoder=dict(type="SparseEncoderSECOND", in_channels=5,
                            sparse_shape=[41, 256, 256], base_channels=4, output_channels=8,
                            encoder_channels=((4, 4, 8), (8, 8, 16), (16, 16, 16), (16, 16)),
                            encoder_strides=(2, 2, 1, 1)))


@needs_spconv
@pytest.mark.parametrize("dynamic", [False, True], ids=["hard", "dynamic"])
def test_gradients_reach_the_first_conv_and_the_lag_of_the_points(dynamic):
    norm = point_feature_normalization(TINY_RANGE, 3)
    encoder = dict(type="DynamicMeanVoxelEncoder" if dynamic else "MeanVoxelEncoder", **norm)
    stream = _stream(encoder).train()
    pre = DrivingDataPreprocessor(use_images=False, voxel_layer=dict(
        max_num_points=-1 if dynamic else 10, point_cloud_range=TINY_RANGE,
        voxel_size=TINY_VOXEL))
    voxels = pre.voxelize([sweep_cloud(1500, seed=s) for s in (0, 1)], training=True)
    voxels["voxels"] = voxels["voxels"].clone().requires_grad_(True)
    bev = stream(voxels, batch_size=2)
    assert bev.shape[0] == 2 and bev.shape[-2:] == (64, 64)
    assert bev[0].abs().sum() > 0 and bev[1].abs().sum() > 0
    bev.square().mean().backward()
    weight = stream.middle_encoder.conv_input[0].weight
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    lag_grad = voxels["voxels"].grad[..., 4]
    assert lag_grad.abs().sum() > 0
