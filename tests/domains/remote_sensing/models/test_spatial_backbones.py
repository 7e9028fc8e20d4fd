"""Spatial backbones: output size = input / stride, channels = out_channels, per-image."""
import pytest
import torch

from interlace.domains.remote_sensing.models import (ConvSpatialEncoder, ResNetSpatialEncoder,
                                                     SwinSpatialEncoder, ViTSpatialEncoder)


@pytest.mark.parametrize("make, bands", [
    (lambda: ConvSpatialEncoder(10, 16, stride=4), 10),
    (lambda: ConvSpatialEncoder(2, 16, stride=1), 2),
    (lambda: ResNetSpatialEncoder(10, depth=18, num_stages=2, width=16), 10),
    (lambda: ViTSpatialEncoder(4, image_size=16, patch_size=4, hidden_size=16, mlp_dim=32,
                               num_layers=1, num_heads=2), 4),
    (lambda: SwinSpatialEncoder(3, embed_dims=12, num_heads=(3, 3, 3, 3), out_stage=1), 3),
])
def test_feature_map_is_input_over_stride(make, bands):
    encoder = make().eval()
    out = encoder(torch.randn(3, bands, 16, 16))
    assert out.shape == (3, encoder.out_channels, 16 // encoder.stride, 16 // encoder.stride)


def test_vit_runs_on_crops_smaller_than_its_image_size():
    encoder = ViTSpatialEncoder(2, image_size=16, patch_size=4, hidden_size=16, mlp_dim=32,
                                num_layers=1, num_heads=2)
    assert encoder(torch.randn(1, 2, 12, 8)).shape == (1, 16, 3, 2)


def test_resnet_and_swin_drop_unused_stages():
    encoder = ResNetSpatialEncoder(10, depth=18, num_stages=1, width=16)
    assert not hasattr(encoder.resnet, "layer2") and encoder.stride == 1
    swin = SwinSpatialEncoder(3, embed_dims=12, num_heads=(3, 3, 3, 3), out_stage=2)
    assert not hasattr(swin.swin, "layers3") and swin.stride == 8 and swin.out_channels == 48


def test_features_of_one_image_do_not_depend_on_the_rest_of_the_batch():
    # GroupNorm, not BatchNorm: padded / cloudy dates folded into the batch cannot leak.
    encoder = ConvSpatialEncoder(10, 16, stride=2).train()
    images = torch.randn(4, 10, 8, 8)
    alone = encoder(images[:1])
    changed = images.clone()
    changed[1:] = 100.0
    assert torch.allclose(encoder(changed)[:1], alone, atol=1e-6)
