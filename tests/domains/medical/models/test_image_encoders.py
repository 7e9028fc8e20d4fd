import pytest
import torch

from interlace.domains.medical.models import ResNetImageEncoder, ViTImageEncoder


def test_resnet_encoder_returns_pooled_layer4_and_layer3_patches():
    encoder = ResNetImageEncoder(depth=18, in_channels=1)
    features = encoder(torch.randn(2, 1, 64, 64))
    assert features.global_features.shape == (2, encoder.global_dims) == (2, 512)
    # layer3 has stride 16: a 64 px image gives a 4 x 4 map of 256 channels.
    assert features.local_features.shape == (2, 16, encoder.local_dims) == (2, 16, 256)
    assert torch.allclose(features.patch_weights, torch.full((2, 16), 1 / 16))


def test_resnet_local_stage_2_gives_the_layer2_map_and_the_same_global_feature():
    torch.manual_seed(0)
    stage3 = ResNetImageEncoder(depth=18).eval()
    stage2 = ResNetImageEncoder(depth=18, local_stage=2).eval()
    stage2.load_state_dict(stage3.state_dict())  # same parameters: only the tap moves
    images = torch.randn(2, 1, 64, 64)
    features = stage2(images)
    # layer2 has stride 8: an 8 x 8 map of 128 channels.
    assert features.local_features.shape == (2, 64, stage2.local_dims) == (2, 64, 128)
    expected = stage2.resnet.layer2(stage2.resnet.layer1(stage2.resnet.maxpool(
        stage2.resnet.act(stage2.resnet.bn1(stage2.resnet.conv1(images))))))
    torch.testing.assert_close(features.local_features, expected.flatten(2).transpose(1, 2))
    torch.testing.assert_close(features.global_features, stage3(images).global_features)
    assert ResNetImageEncoder(depth=50, local_stage=2).local_dims == 512
    with pytest.raises(ValueError, match="local_stage must be 2 or 3, got 4"):
        ResNetImageEncoder(depth=18, local_stage=4)


def test_resnet50_uses_bottleneck_widths():
    encoder = ResNetImageEncoder(depth=50)
    assert (encoder.global_dims, encoder.local_dims) == (2048, 1024)


def test_resnet_loads_torchvision_named_rgb_weights_into_one_channel(tmp_path):
    source = ResNetImageEncoder(depth=18, in_channels=3)
    state = dict(source.resnet.state_dict())
    state["fc.weight"] = torch.zeros(10, 512)  # a classifier head is ignored
    torch.save(state, tmp_path / "rgb.pth")
    encoder = ResNetImageEncoder(depth=18, in_channels=1, pretrained_path=str(tmp_path / "rgb.pth"))
    assert torch.allclose(encoder.resnet.conv1.weight,
                          source.resnet.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(encoder.resnet.layer4[0].conv1.weight, source.resnet.layer4[0].conv1.weight)


def test_vit_encoder_returns_cls_patches_and_attention_weights_summing_to_one():
    encoder = ViTImageEncoder(img_size=32, patch_size=8, hidden_size=32, num_layers=2,
                              num_heads=2)
    features = encoder(torch.randn(3, 1, 32, 32))
    assert features.global_features.shape == (3, 32)
    assert features.local_features.shape == (3, 16, 32)
    assert features.patch_weights.shape == (3, 16)
    assert torch.allclose(features.patch_weights.sum(dim=1), torch.ones(3))
    assert (features.patch_weights >= 0).all()


def test_vit_encoder_has_no_unused_parameters():
    encoder = ViTImageEncoder(img_size=32, patch_size=8, hidden_size=32, num_layers=2,
                              num_heads=2)
    features = encoder(torch.randn(2, 1, 32, 32))
    (features.global_features.sum() + features.local_features.sum()).backward()
    unused = [n for n, p in encoder.named_parameters() if p.grad is None]
    assert unused == []
