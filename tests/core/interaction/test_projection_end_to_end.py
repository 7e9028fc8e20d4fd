"""Encoder and decoder together on the real projection geometry (six cameras around a
BEV map): everything connects, and a loss on the decoder's boxes reaches both streams."""
import pytest
import torch

from interlace.core.engine.registry import MODELS
from interlace.core.interaction import Footprint
from interlace.benchmarks.interaction_scene import make_scene


def box_footprint(predictions, positions):
    dims = predictions["dim"].exp().clamp(0.3, 20.0)
    yaw = torch.atan2(predictions["rot"][..., 0], predictions["rot"][..., 1])
    return Footprint(center=positions, size=dims[..., :2] / 108.0, yaw=yaw,
                     z=predictions["height"][..., 0], height=dims[..., 2])


@pytest.fixture()
def scene():
    torch.manual_seed(0)
    s = make_scene(num_pillars=300, bev_size=36, channels=32, image_scale=0.125)
    for level in s.a.levels + s.b.levels:
        level.requires_grad_(True)
    return s


def build(channels=32):
    encoder = MODELS.build(dict(type="DualStreamEncoder", num_layers=2, embed_dims=channels,
                                num_heads=4, ffn_dims=64, num_levels_a=2, num_levels_b=2,
                                key_pos_dims_a=4, key_pos_dims_b=2, spreading="auto"))
    decoder = MODELS.build(dict(type="PredictiveInteractionDecoder", num_classes=3,
                                heads=dict(center=2, height=1, dim=3, rot=2), embed_dims=channels,
                                num_queries=30, num_heads=4, ffn_dims=64,
                                footprint_fn=box_footprint, default_footprint_size=0.1))
    return encoder, decoder


def test_encoder_then_decoder_on_projection_geometry_reaches_both_streams(scene):
    encoder, decoder = build()
    a_out, b_out = encoder(scene.a, scene.b, scene.correspondence)
    assert [t.shape for t in a_out.levels] == [t.shape for t in scene.a.levels]
    assert [t.shape for t in b_out.levels] == [t.shape for t in scene.b.levels]
    out = decoder(a_out, b_out, scene.correspondence)
    assert len(out) == 5
    seen = torch.stack([layer["seen"] for layer in out.layers[1::2]])
    assert seen.any(), "no decoder query was seen by any camera"
    loss = sum(layer["center"].square().mean() + layer["heatmap"].sigmoid().mean()
               for layer in out.layers)
    loss.backward()
    for name, level in [("bev", scene.a.levels[0]), ("image", scene.b.levels[0])]:
        assert level.grad is not None and level.grad.abs().sum() > 0, name
    # the image-to-LiDAR cross branch of the encoder is trained through the BEV output
    cross = [p for n, p in encoder.named_parameters() if "cross" in n]
    assert cross and any(p.grad is not None and p.grad.abs().sum() > 0 for p in cross)


def test_dropping_the_cameras_leaves_the_lidar_path_intact(scene):
    encoder, decoder = build()
    encoder.eval(), decoder.eval()
    scene.b.present = torch.tensor([False])
    with torch.no_grad():
        a_out, b_out = encoder(scene.a, scene.b, scene.correspondence)
        out = decoder(a_out, b_out, scene.correspondence)
    assert torch.equal(b_out.levels[0], scene.b.levels[0])     # absent stream passes through
    for layer in out.layers[1::2]:                              # 'b' layers see nothing
        assert not layer["seen"].any()
    assert torch.isfinite(out.layers[-1]["center"]).all()
