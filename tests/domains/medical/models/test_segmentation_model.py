"""CxrSegmenter: U-Net shapes on ResNet and ViT, frozen encoder, MGCA weights, predict."""
import pytest
import torch

from interlace.core.engine.checkpoint import CheckpointError
from interlace.core.engine.registry import MODELS
from interlace.domains.medical.data.segmentation import ResizeLongestPadSegd
from interlace.domains.medical.models.image_encoders import ResNetImageEncoder
from interlace.domains.medical.models import segmentation  # noqa: F401  registers CxrSegmenter

RESNET = dict(type="ResNetImageEncoder", depth=18)
TINY_VIT = dict(type="ViTImageEncoder", img_size=32, patch_size=16, hidden_size=32,
                num_layers=4, num_heads=2)
SMALL_DECODER = dict(decoder_channels=(32, 16, 8, 8, 8))


def _resnet_segmenter(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type="CxrSegmenter", image_encoder=RESNET,
                             **{**SMALL_DECODER, **kwargs}))


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_resnet_unet_gives_one_logit_map_at_the_input_size(size):
    model = _resnet_segmenter()
    logits = model(torch.randn(2, 1, *size))
    assert logits.shape == (2, 1, *size)


def test_vit_unet_reshapes_patch_tokens_and_upsamples_to_the_input_size():
    model = MODELS.build(dict(type="CxrSegmenter", image_encoder=TINY_VIT,
                              vit_pyramid_channels=(8, 8, 16, 16),
                              decoder_channels=(16, 8, 8, 8)))
    assert model.vit_blocks == [0, 1, 2, 3]
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"expects \(32, 32\)"):
        model(torch.randn(1, 1, 48, 48))


def _loss_backward(model):
    images = torch.randn(2, 1, 32, 32)
    samples = [dict(gt_seg_map=(torch.rand(1, 32, 32) > 0.7).float()) for _ in range(2)]
    losses = model(images, samples, mode="loss")
    assert set(losses) == {"loss_dice", "loss_bce"}
    sum(losses.values()).backward()


def test_gradients_reach_the_decoder_and_not_the_frozen_encoder():
    model = _resnet_segmenter(freeze_encoder=True)
    model.train()
    _loss_backward(model)
    assert all(p.grad is None for p in model.image_encoder.parameters())
    decoder_grads = [p.grad for p in model.decoder.parameters()] + [
        p.grad for p in model.head.parameters()]
    assert all(g is not None for g in decoder_grads)
    assert sum(g.abs().sum() for g in decoder_grads) > 0


def test_fine_tuning_trains_the_encoder_too():
    model = _resnet_segmenter(freeze_encoder=False)
    model.train()
    _loss_backward(model)
    assert model.image_encoder.resnet.conv1.weight.grad.abs().sum() > 0


def test_frozen_encoder_keeps_its_batchnorm_statistics_in_training():
    model = _resnet_segmenter(freeze_encoder=True)
    model.train()
    assert not model.image_encoder.training and model.decoder.training
    before = model.image_encoder.resnet.bn1.running_mean.clone()
    model(torch.randn(2, 1, 32, 32) * 5 + 3)
    torch.testing.assert_close(model.image_encoder.resnet.bn1.running_mean, before)


def _mgca_checkpoint(path, depth=18):
    torch.manual_seed(1)
    encoder = ResNetImageEncoder(depth=depth)
    for p in encoder.parameters():
        p.data.normal_()
    state = {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state["image_projection.linear.weight"] = torch.ones(3, 3)  # not the encoder's
    torch.save({"meta": {"epoch": 3}, "state_dict": state}, path)
    return encoder.state_dict()


def test_mgca_checkpoint_loads_into_the_encoder_and_leaves_the_decoder(tmp_path):
    expected = _mgca_checkpoint(tmp_path / "mgca.pth")
    model = _resnet_segmenter(pretrained=str(tmp_path / "mgca.pth"))
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    encoder_before = model.image_encoder.resnet.conv1.weight.clone()
    model.init_weights()
    for key, value in model.image_encoder.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert not torch.equal(encoder_before, model.image_encoder.resnet.conv1.weight)
    for key, value in model.decoder.state_dict().items():
        torch.testing.assert_close(value, decoder_before[key])


def test_checkpoint_of_another_encoder_is_refused_naming_the_file(tmp_path):
    _mgca_checkpoint(tmp_path / "mgca_r34.pth", depth=34)
    model = _resnet_segmenter(pretrained=str(tmp_path / "mgca_r34.pth"))
    with pytest.raises(CheckpointError, match="mgca_r34.pth"):
        model.init_weights()


def test_predict_returns_probabilities_at_the_original_image_size():
    model = _resnet_segmenter().eval()
    geometry = ResizeLongestPadSegd(size=64).geometry(100, 70)
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64), [dict(seg_geometry=geometry, img_path="x.jpg")],
                    mode="predict")
    assert out[0]["img_path"] == "x.jpg" and out[0]["seg_prob"].shape == (1, 64, 64)
    prob = out[0]["pred_prob"]
    assert prob.shape == (100, 70) and 0 <= prob.min() and prob.max() <= 1
