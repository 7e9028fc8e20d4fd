"""ImageNet weights for the camera backbones, in the layouts they are published in: each file
is built here from our own ResNet-50 / Swin-T (random values, published keys, shapes and
wrappers), loaded, and every tensor checked against its source.

Key counts (loaded / missing / unexpected; "dropped" = source keys the map discards):

=============================================  ======  =======  ==========  =======
file                                           loaded  missing  unexpected  dropped
=============================================  ======  =======  ==========  =======
torchvision resnet50 (bare state dict)         318     0        0           2 fc
mmdet detector (state_dict, backbone.)         318     0        0           0
mmpretrain resnet50 (state_dict, backbone.)    318     0        0           0
official Swin-T ('model')                      171     6        0           19
timm >= 0.9 Swin-T                             171     6        0           2 head.fc
timm Swin-T features_only (layers_i)           169     8        0           0
mmpretrain Swin-T (state_dict, backbone.)      171     6        0           12
mmdet Swin-T detector (norm0-3)                177     0        0           12
=============================================  ======  =======  ==========  =======

Swin-T: 4 patch-embed + 12 blocks x 13 + 3 merges x 3 + the final norm = 171 tensors. The
official file also holds 12 relative position indices, 5 attention masks and the head (19
dropped); timm >= 0.9 files save neither buffer; mmdet / mmpretrain files save the indices
(12 dropped). The 6 missing are ``output_norms.0-2`` (a classifier has one final norm, on
stage 3; a features_only model has none, so 8).
"""
from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import torch

from interlace.core.engine.weight_conversion import detect_layout, load_published_weights
from interlace.domains.driving.models.camera import MonaiResNetBackbone, MonaiSwinBackbone


def _randomised(module) -> "OrderedDict[str, torch.Tensor]":
    generator = torch.Generator().manual_seed(0)
    return OrderedDict(
        (k, torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone())
        for k, v in module.state_dict().items())


# --- ResNet-50 ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet_source():
    """torchvision's resnet50 state dict: conv1.weight, bn1.*, layer1.0.conv1.weight, ...,
    fc.weight (1000, 2048), fc.bias; with the values our backbone must end up holding."""
    ours = _randomised(MonaiResNetBackbone(depth=50))
    torchvision = OrderedDict((k[len("resnet."):], v) for k, v in ours.items())
    torchvision["fc.weight"], torchvision["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    assert len(torchvision) == 320  # torchvision.models.resnet50().state_dict()
    assert tuple(torchvision["layer1.0.conv1.weight"].shape) == (64, 64, 1, 1)
    assert tuple(torchvision["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    return ours, torchvision


def _check_resnet(backbone, ours):
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, ours[key]), key


def test_torchvision_resnet50_file(resnet_source, tmp_path):
    ours, torchvision = resnet_source
    torch.save(torchvision, tmp_path / "resnet50-0676ba61.pth")
    backbone = MonaiResNetBackbone(depth=50)
    report = load_published_weights(backbone, tmp_path / "resnet50-0676ba61.pth",
                                    family="torchvision", strict=True)
    assert report.counts() == dict(loaded=318, missing=0, unexpected=0, shape_mismatched=0,
                                   dropped=2)
    assert report.dropped == ["fc.weight", "fc.bias"]
    _check_resnet(backbone, ours)


@pytest.mark.parametrize("flavour, extra, dropped", [
    ("mmdet", {"neck.lateral_convs.0.conv.weight": torch.zeros(256, 256, 1, 1),
               "rpn_head.rpn_conv.weight": torch.zeros(256, 256, 3, 3)}, 0),
    ("mmpretrain", {"head.fc.weight": torch.zeros(1000, 2048), "head.fc.bias": torch.zeros(1000)},
     0),
])
def test_mmdet_and_mmpretrain_resnet50_checkpoints(resnet_source, tmp_path, flavour, extra,
                                                   dropped):
    ours, torchvision = resnet_source
    state = OrderedDict(("backbone." + k, v) for k, v in torchvision.items()
                        if not k.startswith("fc."))
    state.update(extra)  # the rest of the model sits beside the backbone
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": state}, tmp_path / "ckpt.pth")
    backbone = MonaiResNetBackbone(depth=50)
    report = load_published_weights(backbone, tmp_path / "ckpt.pth", source_prefix="backbone.",
                                    family="mmdet", strict=True)
    assert report.counts() == dict(loaded=318, missing=0, unexpected=0, shape_mismatched=0,
                                   dropped=dropped)
    _check_resnet(backbone, ours)


def test_resnet_loader_of_the_backbone_reads_the_torchvision_file(resnet_source, tmp_path):
    ours, torchvision = resnet_source
    torch.save(torchvision, tmp_path / "resnet50.pth")
    backbone = MonaiResNetBackbone(depth=50)
    assert backbone.load_pretrained(tmp_path / "resnet50.pth", strict=True).complete
    _check_resnet(backbone, ours)


# --- Swin-T -----------------------------------------------------------------------------------

def _official_name(key: str) -> str:
    key = re.sub(r"^swin\.layers(\d)\.0\.", lambda m: f"layers.{int(m.group(1)) - 1}.", key)
    key = key.replace("mlp.linear1.", "mlp.fc1.").replace("mlp.linear2.", "mlp.fc2.")
    return re.sub(r"^swin\.", "", key)


@pytest.fixture(scope="module")
def swin_source():
    """Microsoft's swin_tiny_patch4_window7_224.pth 'model' dict (190 tensors): our Swin-T's
    values under the official names, with the relative position indices, the attention
    masks of the shifted blocks of stages 0-2 and the ImageNet head."""
    ours = _randomised(MonaiSwinBackbone())
    official = OrderedDict()
    for key, value in ours.items():
        if key.startswith("output_norms."):
            if key.startswith("output_norms.3."):
                official["norm." + key.rsplit(".", 1)[1]] = value
            continue
        official[_official_name(key)] = value
    for stage, blocks, side in ((0, 2, 56), (1, 2, 28), (2, 6, 14)):
        for block in range(1, blocks, 2):
            official[f"layers.{stage}.blocks.{block}.attn_mask"] = torch.zeros(
                (side // 7) ** 2, 49, 49)
    official["head.weight"], official["head.bias"] = torch.randn(1000, 768), torch.randn(1000)
    assert len(official) == 190
    assert tuple(official["layers.0.blocks.0.attn.relative_position_bias_table"].shape) == (169, 3)
    assert tuple(official["layers.2.downsample.reduction.weight"].shape) == (768, 1536)
    return ours, official


def _check_swin(backbone, ours, skip=("output_norms.0", "output_norms.1", "output_norms.2")):
    for key, value in backbone.named_parameters():
        if not key.startswith(skip):
            assert torch.equal(value, ours[key]), key


SWIN_MISSING = [f"output_norms.{k}.{p}" for k in range(3) for p in ("weight", "bias")]


def test_official_swin_tiny_file(swin_source, tmp_path):
    ours, official = swin_source
    torch.save({"model": official}, tmp_path / "swin_tiny_patch4_window7_224.pth")
    backbone = MonaiSwinBackbone()
    report = load_published_weights(backbone, tmp_path / "swin_tiny_patch4_window7_224.pth",
                                    family="timm")
    # 4 patch-embed + 12 blocks x 13 (no position index) + 3 merges x 3 + final norm 2
    assert report.counts() == dict(loaded=171, missing=6, unexpected=0, shape_mismatched=0,
                                   dropped=19)  # 12 position indices + 5 masks + 2 head
    assert report.missing == SWIN_MISSING
    _check_swin(backbone, ours)
    assert torch.equal(backbone.output_norms["3"].weight, official["norm.weight"])


def _timm_state(official, features_only: bool = False):
    """timm >= 0.9: merges open the next stage, no buffers saved, head.fc; features_only
    models name stages layers_i and have no head or final norm."""
    timm = OrderedDict()
    for key, value in official.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue
        key = re.sub(r"^layers\.(\d)\.downsample\.",
                     lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
        key = key.replace("head.", "head.fc.")
        if features_only:
            if key.startswith(("head.", "norm.")):
                continue
            key = re.sub(r"^layers\.(\d)\.", r"layers_\1.", key)
        timm[key] = value
    return timm


@pytest.mark.parametrize("features_only", [False, True])
def test_timm_swin_tiny_files(swin_source, tmp_path, features_only):
    ours, official = swin_source
    timm = _timm_state(official, features_only)
    assert ("layers_1.downsample.reduction.weight" if features_only
            else "layers.1.downsample.reduction.weight") in timm
    torch.save(timm, tmp_path / "timm_swin.pth")
    assert detect_layout(timm) == "timm_swin"
    backbone = MonaiSwinBackbone()
    report = load_published_weights(backbone, tmp_path / "timm_swin.pth", family="timm")
    missing = SWIN_MISSING + ([] if not features_only else ["output_norms.3.weight",
                                                            "output_norms.3.bias"])
    # no position indices or masks in the file; features_only has no final norm or head
    assert report.counts() == dict(loaded=171 - 2 * features_only, missing=len(missing),
                                   unexpected=0, shape_mismatched=0,
                                   dropped=0 if features_only else 2)
    assert sorted(report.missing) == sorted(missing)
    _check_swin(backbone, ours, skip=tuple(k.rsplit(".", 1)[0] for k in missing))


def _mmdet_swin_state(official, prefix="backbone."):
    """mmpretrain / mmdet SwinTransformer: stages, w_msa, ffn, patch_embed.projection, and
    patch merging in nn.Unfold's channel order."""
    out = OrderedDict()
    for key, value in official.items():
        if key.startswith("head.") or key.endswith("attn_mask"):
            continue
        if re.match(r"layers\.\d\.downsample\.reduction", key):  # concat -> unfold order
            o, i = value.shape
            value = value.reshape(o, 4, i // 4)[:, [0, 2, 1, 3]].transpose(1, 2).reshape(o, i)
        elif re.match(r"layers\.\d\.downsample\.norm", key):
            value = value.reshape(4, -1)[[0, 2, 1, 3]].transpose(0, 1).reshape(-1)
        key = key.replace("layers.", "stages.").replace("attn.", "attn.w_msa.")
        key = key.replace("mlp.fc1.", "ffn.layers.0.0.").replace("mlp.fc2.", "ffn.layers.1.")
        key = key.replace("patch_embed.proj.", "patch_embed.projection.")
        key = re.sub(r"^norm\.", "norm3.", key)
        out[prefix + key] = value
    return out


def test_mmpretrain_swin_tiny_checkpoint(swin_source, tmp_path):
    ours, official = swin_source
    state = _mmdet_swin_state(official)
    state["head.fc.weight"], state["head.fc.bias"] = torch.randn(1000, 768), torch.randn(1000)
    assert "backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table" in state
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "swin-tiny_in1k.pth")
    backbone = MonaiSwinBackbone()
    report = load_published_weights(backbone, tmp_path / "swin-tiny_in1k.pth",
                                    source_prefix="backbone.", family="mmdet")
    assert report.counts() == dict(loaded=171, missing=6, unexpected=0, shape_mismatched=0,
                                   dropped=12)
    _check_swin(backbone, ours)  # the merges' reordering undone exactly


def test_mmdet_swin_detector_with_four_output_norms(swin_source, tmp_path):
    ours, official = swin_source
    state = _mmdet_swin_state(official)
    for k in range(3):
        state[f"backbone.norm{k}.weight"] = ours[f"output_norms.{k}.weight"]
        state[f"backbone.norm{k}.bias"] = ours[f"output_norms.{k}.bias"]
    state["neck.fpn_convs.0.conv.weight"] = torch.zeros(256, 256, 3, 3)
    torch.save({"state_dict": state}, tmp_path / "mask_rcnn_swin-t.pth")
    backbone = MonaiSwinBackbone()
    report = load_published_weights(backbone, tmp_path / "mask_rcnn_swin-t.pth",
                                    source_prefix="backbone.", family="mmdet", strict=True)
    assert report.counts() == dict(loaded=177, missing=0, unexpected=0, shape_mismatched=0,
                                   dropped=12)
    _check_swin(backbone, ours, skip=())


def test_a_file_of_another_family_is_refused_naming_the_layout(resnet_source):
    _, torchvision = resnet_source
    with pytest.raises(ValueError, match="torchvision_resnet.*not a timm file"):
        load_published_weights(MonaiSwinBackbone(), torchvision, family="timm")
