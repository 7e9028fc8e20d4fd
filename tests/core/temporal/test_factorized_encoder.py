"""FactorizedSpatioTemporalEncoder: shapes, masking of dates / pixels / streams, gradients."""
import pytest
import torch
from torch import nn

from interlace.core.engine.registry import MODELS
from interlace.core.temporal import FactorizedSpatioTemporalEncoder, pool_valid_mask


class _StridedConv(nn.Module):
    """A one-layer backbone: (N, C, H, W) -> (N, out_channels, H / stride, W / stride)."""

    def __init__(self, in_channels, out_channels=12, stride=2):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride
        self.conv = nn.Conv2d(in_channels, out_channels, stride, stride=stride)

    def forward(self, x):
        return torch.tanh(self.conv(x))


def _encoder(**kwargs):
    torch.manual_seed(0)
    defaults = dict(backbones=dict(optical=_StridedConv(4, stride=2),
                                   sar=_StridedConv(2, stride=4)),
                    embed_dims=16, num_layers=2, num_heads=4)
    defaults.update(kwargs)
    return FactorizedSpatioTemporalEncoder(**defaults).eval()


def _batch(b=2, t_opt=3, t_sar=4, size=16):
    series = dict(optical=torch.randn(b, t_opt, 4, size, size),
                  sar=torch.randn(b, t_sar, 2, size, size))
    doy = dict(optical=torch.randint(1, 367, (b, t_opt)), sar=torch.randint(1, 367, (b, t_sar)))
    return series, doy


def test_fused_map_and_stream_features_have_the_grid_shape():
    series, doy = _batch()
    out = _encoder()(series, doy)
    # Grid = the first stream's (optical, stride 2) feature map; SAR (stride 4) is upsampled.
    assert out.fused.shape == (2, 16, 8, 8)
    assert out.stream_features["optical"].shape == (2, 3, 16, 8, 8)
    assert out.stream_features["sar"].shape == (2, 4, 16, 8, 8)
    assert out.stream_valid["sar"].shape == (2, 4, 8, 8) and out.stream_valid["sar"].all()


def test_grid_size_and_high_res_stream():
    series, doy = _batch()
    encoder = _encoder(grid_size=4, high_res_backbone=_StridedConv(3, stride=1))
    out = encoder(series, doy, high_res=torch.randn(2, 3, 64, 64))
    assert out.fused.shape == (2, 16, 4, 4)
    assert out.high_res_features.shape == (2, 16, 4, 4)


def test_registered_and_built_from_config():
    encoder = MODELS.build(dict(type="FactorizedSpatioTemporalEncoder",
                                backbones=dict(a=_StridedConv(1)), embed_dims=8, num_heads=2))
    assert isinstance(encoder, FactorizedSpatioTemporalEncoder)


def test_padding_date_is_masked_exactly():
    encoder = _encoder()
    series, doy = _batch()
    doy["optical"][0, 1] = 0  # sample 0's second optical date is padding
    changed = {k: v.clone() for k, v in series.items()}
    changed["optical"][0, 1] = torch.randn_like(changed["optical"][0, 1]) * 10
    a, b = encoder(series, doy).fused, encoder(changed, doy).fused
    assert torch.equal(a, b)
    doy["optical"][0, 1] = 100  # not padding any more: the change shows
    assert not torch.allclose(encoder(series, doy).fused[0], encoder(changed, doy).fused[0])


def test_cloudy_pixels_mask_the_date_only_where_they_are():
    encoder = _encoder()
    series, doy = _batch()
    valid = dict(optical=torch.ones(2, 3, 16, 16, dtype=torch.bool))
    valid["optical"][:, 0, :8, :] = False  # date 0 cloudy in the top half
    changed = {k: v.clone() for k, v in series.items()}
    changed["optical"][:, 0] = series["optical"][:, 0] * 3 - 1  # date 0 changed everywhere
    a = encoder(series, doy, valid).fused
    b = encoder(changed, doy, valid).fused
    # Date 0 is masked at the top cells, which ignore its change exactly; the bottom cells,
    # where it is clear, see it.
    assert torch.equal(a[..., :4, :], b[..., :4, :])
    assert not torch.allclose(a[..., 4:, :], b[..., 4:, :])
    out = encoder(series, doy, valid)
    cell_valid = out.stream_valid["optical"][:, 0]
    assert not cell_valid[:, :4].any() and cell_valid[:, 4:].all()


def test_pool_valid_mask_any_and_fraction():
    valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = True
    assert pool_valid_mask(valid, (2, 2))[0].tolist() == [[True, False], [False, False]]
    assert not pool_valid_mask(valid, (2, 2), min_valid_fraction=0.5).any()


def test_absent_stream_equals_running_without_its_tokens():
    encoder = _encoder()
    series, doy = _batch()
    present = dict(sar=torch.tensor([False, True]))
    zero_filled = dict(series, sar=series["sar"].clone())
    zero_filled["sar"][0] = 0.0
    flagged = encoder(zero_filled, doy, present=present).fused
    optical_only = encoder(dict(optical=series["optical"]), dict(optical=doy["optical"])).fused
    assert torch.isfinite(flagged).all()
    assert torch.allclose(flagged[0], optical_only[0], atol=1e-5)
    assert not torch.allclose(flagged[1], optical_only[1], atol=1e-3)


def test_position_with_every_observation_masked_is_finite():
    encoder = _encoder()
    series, doy = _batch()
    valid = dict(optical=torch.zeros(2, 3, 16, 16, dtype=torch.bool),
                 sar=torch.zeros(2, 4, 16, 16, dtype=torch.bool))
    out = encoder(series, doy, valid).fused
    assert torch.isfinite(out).all()


def test_gradients_reach_both_stream_backbones():
    encoder = _encoder().train()
    series, doy = _batch()
    encoder(series, doy).fused.square().mean().backward()
    for name in ("optical", "sar"):
        grad = encoder.backbones[name].conv.weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_unknown_stream_is_an_error():
    series, doy = _batch()
    with pytest.raises(KeyError, match="unknown streams"):
        _encoder()(dict(series, lidar=series["sar"]), doy)
