"""Camera stream: MONAI ResNet / Swin backbones, pretrained-weight mapping, multi-view encoder."""
import re
import time

import pytest
import torch
from torch import nn

from interlace.core.engine.registry import MODELS
from interlace.core.necks import FeaturePyramidNetwork
from interlace.domains.driving.models.camera import (MonaiResNetBackbone, MonaiSwinBackbone,
                                                     MultiViewImageEncoder, detect_swin_format)
from interlace.domains.driving.models.camera.pretrained_weights import swin_unfold_to_concat


SMALL_SWIN = dict(embed_dim=24, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)


def _shapes(outputs):
    return [tuple(o.shape) for o in outputs]


# --- shapes and strides ---------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet50():
    return MonaiResNetBackbone(depth=50).eval()


@pytest.fixture(scope="module")
def swin_tiny():
    return MonaiSwinBackbone().eval()


@pytest.mark.parametrize("size", [(64, 96), (61, 93)])
def test_resnet50_returns_four_stages_at_strides_4_to_32(resnet50, size):
    with torch.no_grad():
        outs = resnet50(torch.randn(1, 3, *size))
    assert _shapes(outs) == [(1, 256, 16, 24), (1, 512, 8, 12), (1, 1024, 4, 6), (1, 2048, 2, 3)]
    assert resnet50.out_channels == (256, 512, 1024, 2048)
    assert resnet50.out_strides == (4, 8, 16, 32)


@pytest.mark.parametrize("size", [(64, 96), (61, 93)])
def test_swin_tiny_returns_96_to_768_channels_at_strides_4_to_32(swin_tiny, size):
    # official Swin-T (28,288,354) minus its 1000-class head, plus norm0-2 of detection
    assert sum(p.numel() for p in swin_tiny.parameters()) == 27_520_698
    with torch.no_grad():
        outs = swin_tiny(torch.randn(1, 3, *size))
    assert _shapes(outs) == [(1, 96, 16, 24), (1, 192, 8, 12), (1, 384, 4, 6), (1, 768, 2, 3)]
    assert swin_tiny.out_strides == (4, 8, 16, 32)


def test_swin_padding_is_cropped_back_not_leaked_into_the_valid_area_shape():
    backbone = MonaiSwinBackbone(**SMALL_SWIN).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(2, 3, 50, 70))
    assert _shapes(outs) == [(2, 24, 13, 18), (2, 48, 7, 9), (2, 96, 4, 5), (2, 192, 2, 3)]


def test_swin_stage_loop_matches_monai_forward():
    # Our per-stage loop (blocks, take the map, then merge) must compute what MONAI's own
    # forward does; its last output is the final stage, unmerged once that merge is removed.
    backbone = MonaiSwinBackbone(**SMALL_SWIN).eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours = backbone(images)
        monai_last = backbone.swin(images, normalize=False)[-1]
        expected = backbone.output_norms["3"](monai_last.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(ours[3], expected, atol=1e-5)


def test_unrequested_later_stages_are_not_built():
    resnet = MonaiResNetBackbone(depth=18, out_indices=(0,))
    swin = MonaiSwinBackbone(**SMALL_SWIN, out_indices=(0, 1))
    assert resnet.resnet.layer2 is None and not any("layer4" in k for k in resnet.state_dict())
    assert swin.swin.layers2[0].downsample is None and len(swin.swin.layers3) == 0
    outs = swin(torch.randn(1, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in swin.parameters())


# --- frozen stages and BN ------------------------------------------------------------

def test_resnet_frozen_stages_get_no_gradients_and_norm_eval_keeps_running_stats():
    backbone = MonaiResNetBackbone(depth=18, frozen_stages=1, norm_eval=True).train()
    bn_before = backbone.resnet.layer3[0].bn1.running_mean.clone()
    outs = backbone(torch.randn(2, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    frozen = [backbone.resnet.conv1, backbone.resnet.bn1, backbone.resnet.layer1]
    assert all(p.grad is None and not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.grad is not None for p in backbone.resnet.layer2.parameters())
    assert not backbone.resnet.layer3[0].bn1.training
    assert torch.equal(backbone.resnet.layer3[0].bn1.running_mean, bn_before)
    trainable = MonaiResNetBackbone(depth=18, norm_eval=False).train()
    trainable(torch.randn(2, 3, 32, 32))
    assert trainable.resnet.layer3[0].bn1.training


def test_swin_frozen_stages_get_no_gradients():
    backbone = MonaiSwinBackbone(**SMALL_SWIN, frozen_stages=2).train()
    outs = backbone(torch.randn(1, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    frozen = [backbone.swin.patch_embed, backbone.swin.layers1, backbone.swin.layers2,
              backbone.output_norms["0"], backbone.output_norms["1"]]
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert all(p.grad is not None for p in backbone.swin.layers3.parameters())
    assert not backbone.swin.layers1[0].training and backbone.swin.layers3[0].training


# --- pretrained weights -------------------------------------------------------------

def _randomised(module):
    return {k: torch.randn_like(v, dtype=torch.float32).to(v.dtype) if v.is_floating_point() else v
            for k, v in module.state_dict().items()}


def test_torchvision_resnet_weights_land_under_monai_names(tmp_path):
    source = _randomised(MonaiResNetBackbone(depth=18))
    torchvision_style = {k[len("resnet."):]: v for k, v in source.items()}
    assert "layer1.0.conv1.weight" in torchvision_style and "conv1.weight" in torchvision_style
    torchvision_style.update({"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)})
    path = tmp_path / "resnet18.pth"
    torch.save({"img_backbone." + k: v for k, v in torchvision_style.items()}, path)

    backbone = MonaiResNetBackbone(depth=18)
    report = backbone.load_pretrained(path, source_prefix="img_backbone.", strict=True)
    assert report.complete and not report.unexpected
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, source[key]), key


def _swin_official_state(module):
    """Our Swin's state dict renamed to the official Microsoft layout (the inverse of the
    documented mapping), plus the buffers and head an official file carries."""
    official = {}
    for key, value in _randomised(module).items():
        if key.endswith("relative_position_index"):
            continue
        key = re.sub(r"^swin\.layers(\d)\.0\.", lambda m: f"layers.{int(m.group(1)) - 1}.", key)
        key = key.replace("mlp.linear1.", "mlp.fc1.").replace("mlp.linear2.", "mlp.fc2.")
        key = re.sub(r"^swin\.", "", key)
        key = re.sub(r"^output_norms\.(\d)\.", r"norm\1.", key)
        official[key] = value
    official["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    official["layers.0.blocks.1.attn_mask"] = torch.zeros(4, 49, 49)
    official["head.weight"], official["head.bias"] = torch.randn(10, 192), torch.randn(10)
    return official


def _expected_from_official(official, key):
    """Where a value of our model must come from in the official dict."""
    if key.startswith("output_norms."):
        return official[f"norm{key.split('.')[1]}.{key.split('.')[-1]}"]
    key = re.sub(r"^swin\.layers(\d)\.0\.", lambda m: f"layers.{int(m.group(1)) - 1}.", key)
    key = key.replace("mlp.linear1.", "mlp.fc1.").replace("mlp.linear2.", "mlp.fc2.")
    return official[re.sub(r"^swin\.", "", key)]


def test_official_swin_weights_load_every_parameter(tmp_path):
    official = _swin_official_state(MonaiSwinBackbone(**SMALL_SWIN))
    assert "patch_embed.proj.weight" in official
    assert "layers.0.blocks.0.attn.relative_position_bias_table" in official
    assert "layers.2.downsample.reduction.weight" in official
    assert "layers.3.downsample.norm.weight" not in official
    torch.save({"state_dict": official}, tmp_path / "swin.pth")
    backbone = MonaiSwinBackbone(**SMALL_SWIN)
    report = backbone.load_pretrained(tmp_path / "swin.pth", strict=True)
    assert report.complete
    for key, value in backbone.named_parameters():
        assert torch.equal(value, _expected_from_official(official, key)), key


def test_classification_swin_final_norm_feeds_stage_3_and_other_norms_are_reported_missing(tmp_path):
    official = _swin_official_state(MonaiSwinBackbone(**SMALL_SWIN))
    for k in range(4):
        weight, bias = official.pop(f"norm{k}.weight"), official.pop(f"norm{k}.bias")
    official["norm.weight"], official["norm.bias"] = weight, bias
    torch.save(official, tmp_path / "swin_cls.pth")
    backbone = MonaiSwinBackbone(**SMALL_SWIN)
    report = backbone.load_pretrained(tmp_path / "swin_cls.pth")
    expected_missing = [f"output_norms.{k}.{p}" for k in range(3) for p in ("bias", "weight")]
    assert sorted(report.missing) == expected_missing
    assert not report.unexpected
    assert torch.equal(backbone.output_norms["3"].weight, weight)


def test_timm_swin_layout_moves_patch_merging_back_one_stage(tmp_path):
    official = _swin_official_state(MonaiSwinBackbone(**SMALL_SWIN))
    timm_style = {}
    for key, value in official.items():
        key = re.sub(r"^layers\.(\d)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
        timm_style[key.replace("head.", "head.fc.")] = value
    assert detect_swin_format(timm_style) == "timm"
    torch.save(timm_style, tmp_path / "timm.pth")
    backbone = MonaiSwinBackbone(**SMALL_SWIN)
    assert backbone.load_pretrained(tmp_path / "timm.pth", strict=True).complete
    assert torch.equal(backbone.swin.layers1[0].downsample.reduction.weight,
                       official["layers.0.downsample.reduction.weight"])


def test_mmdet_unfold_order_is_converted_to_the_concatenation_order():
    # The same 2x2 neighbourhood gathered the mmdet way (nn.Unfold) and the official /
    # MONAI way must give the same merged feature once the weight is reordered.
    channels = 3
    x = torch.randn(1, 4, 6, channels)  # (B, H, W, C)
    concat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    unfold = nn.Unfold(2, stride=2)(x.permute(0, 3, 1, 2)).transpose(1, 2).reshape(concat.shape)
    weight_unfold_order = torch.randn(5, 4 * channels)
    expected = unfold @ weight_unfold_order.T
    assert torch.allclose(concat @ swin_unfold_to_concat(weight_unfold_order).T, expected, atol=1e-6)
    # LayerNorm's per-channel scale: the weighted sum over channels must agree too.
    scale_unfold_order = torch.randn(4 * channels)
    assert torch.allclose((concat * swin_unfold_to_concat(scale_unfold_order)).sum(-1),
                          (unfold * scale_unfold_order).sum(-1), atol=1e-6)


def test_mmdet_swin_checkpoint_loads_from_a_detector_prefix(tmp_path):
    official = _swin_official_state(MonaiSwinBackbone(**SMALL_SWIN))
    mmdet_style = {}
    for key, value in official.items():
        if key.startswith("head.") or key.endswith("attn_mask"):
            continue
        if re.match(r"layers\.\d\.downsample\.reduction", key):  # concat -> unfold order
            out_c, in_c = value.shape
            value = value.reshape(out_c, 4, in_c // 4)[:, [0, 2, 1, 3]].transpose(1, 2).reshape(out_c, in_c)
        elif re.match(r"layers\.\d\.downsample\.norm", key):
            value = value.reshape(4, -1)[[0, 2, 1, 3]].transpose(0, 1).reshape(-1)
        key = key.replace("layers.", "stages.").replace("attn.", "attn.w_msa.")
        key = key.replace("mlp.fc1.", "ffn.layers.0.0.").replace("mlp.fc2.", "ffn.layers.1.")
        key = key.replace("patch_embed.proj.", "patch_embed.projection.")
        mmdet_style["img_backbone." + key] = value
    torch.save({"state_dict": mmdet_style, "meta": {}}, tmp_path / "detector.pth")
    backbone = MonaiSwinBackbone(**SMALL_SWIN)
    report = backbone.load_pretrained(tmp_path / "detector.pth", source_prefix="img_backbone.", strict=True)
    assert report.complete
    for key, value in backbone.named_parameters():
        assert torch.equal(value, _expected_from_official(official, key)), key


def test_mismatched_weights_are_reported_not_silently_loaded(tmp_path):
    official = _swin_official_state(MonaiSwinBackbone(**SMALL_SWIN))
    official["patch_embed.proj.weight"] = torch.randn(24, 3, 8, 8)
    official["absolute_pos_embed"] = torch.randn(1, 64, 24)
    torch.save(official, tmp_path / "bad.pth")
    backbone = MonaiSwinBackbone(**SMALL_SWIN)
    report = backbone.load_pretrained(tmp_path / "bad.pth")
    assert report.unexpected == ["absolute_pos_embed"]
    assert report.shape_mismatched[0][0] == "swin.patch_embed.proj.weight"
    assert "swin.patch_embed.proj.weight" not in report.missing
    with pytest.raises(ValueError, match="strict"):
        backbone.load_pretrained(tmp_path / "bad.pth", strict=True)


# --- multi-view encoder ---------------------------------------------------------------

def _encoder():
    return MODELS.build(dict(
        type="MultiViewImageEncoder",
        backbone=dict(type="MonaiResNetBackbone", depth=18, norm_eval=False),
        neck=dict(type="FeaturePyramidNetwork", in_channels=[64, 128, 256, 512], out_channels=16,
                  num_outs=4, out_indices=[0, 1]))).eval()


def test_multi_view_encoder_returns_per_view_levels():
    encoder = _encoder()
    assert isinstance(encoder, MultiViewImageEncoder) and isinstance(encoder.neck, FeaturePyramidNetwork)
    with torch.no_grad():
        outs = encoder(torch.randn(2, 3, 3, 40, 72))
    assert _shapes(outs) == [(2, 3, 16, 10, 18), (2, 3, 16, 5, 9)]
    assert encoder.out_strides == (4, 8) and encoder.out_channels == (16, 16)


def test_missing_views_are_zero_and_never_reach_the_backbone():
    encoder = _encoder()
    seen = []
    encoder.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    images = torch.randn(2, 3, 3, 40, 72)
    missing = torch.tensor([[False, True, False], [True, False, False]])
    with torch.no_grad():
        outs = encoder(images, view_missing=missing)
        reference = encoder(images)
    assert seen == [4, 6]
    for out, ref in zip(outs, reference):
        assert torch.count_nonzero(out[missing]) == 0
        assert torch.allclose(out[~missing], ref[~missing], atol=1e-5)


def test_all_views_missing_gives_zeros_of_the_usual_shape_without_compute():
    encoder = _encoder()
    calls = []
    encoder.backbone.register_forward_pre_hook(lambda module, args: calls.append(1))
    outs = encoder(torch.randn(1, 2, 3, 41, 75), view_missing=torch.ones(1, 2, dtype=torch.bool))
    assert not calls
    assert _shapes(outs) == [(1, 2, 16, 11, 19), (1, 2, 16, 6, 10)]
    assert all(torch.count_nonzero(o) == 0 for o in outs)
    with torch.no_grad():
        computed = encoder(torch.randn(1, 2, 3, 41, 75))
    assert _shapes(computed) == _shapes(outs)


def test_gradients_flow_to_the_backbone_through_present_views_only():
    encoder = _encoder().train()
    images = torch.randn(1, 3, 3, 32, 32, requires_grad=True)
    outs = encoder(images, view_missing=torch.tensor([[False, True, False]]))
    sum(o.sum() for o in outs).backward()
    assert images.grad[0, 1].abs().sum() == 0 and images.grad[0, 0].abs().sum() > 0


# --- full resolution (slow) -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backbone_cfg", [dict(type="MonaiResNetBackbone", depth=50),
                                          dict(type="MonaiSwinBackbone")])
def test_full_resolution_single_view(backbone_cfg):
    backbone = MODELS.build(backbone_cfg).eval()
    images = torch.randn(1, 3, 448, 800)
    with torch.no_grad():
        start = time.perf_counter()
        outs = backbone(images)
        seconds = time.perf_counter() - start
    assert [tuple(o.shape[-2:]) for o in outs] == [(112, 200), (56, 100), (28, 50), (14, 25)]
    print(f"{backbone_cfg['type']}: {_shapes(outs)}, {seconds:.2f} s per 448x800 view")
