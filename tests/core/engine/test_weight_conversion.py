"""The key-map machinery on small hand-made state dicts: layout detection, renaming, the ViT
position-embedding fold, RGB -> grey input convolutions, finding the backbone in a model,
strict loads and whole-checkpoint maps."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from interlace.core.engine.checkpoint import CheckpointError
from interlace.core.engine.weight_conversion import (CheckpointMap, KeyMap, convert_state_dict,
                                                     detect_layout, find_target_prefix,
                                                     load_published_weights)

ONE = torch.ones(1)


@pytest.mark.parametrize("keys, layout", [
    (["conv1.weight", "layer1.0.conv1.weight", "fc.weight"], "torchvision_resnet"),
    (["patch_embed.proj.weight", "layers.0.blocks.0.attn.qkv.weight",
      "layers.0.downsample.reduction.weight"], "official_swin"),
    (["layers.0.blocks.0.attn.qkv.weight", "layers.1.downsample.reduction.weight"], "timm_swin"),
    (["layers_0.blocks.0.attn.qkv.weight"], "timm_swin"),
    (["stages.0.blocks.0.attn.w_msa.qkv.weight"], "mmdet_swin"),
    (["cls_token", "pos_embed", "blocks.0.attn.qkv.weight"], "timm_vit"),
    (["bert.encoder.layer.0.attention.self.query.weight"], "hf_bert"),
])
def test_layouts_are_told_apart_by_their_keys(keys, layout):
    assert detect_layout({k: ONE for k in keys}) == layout


def test_unknown_keys_name_the_first_keys():
    with pytest.raises(CheckpointError, match="no known weight layout.*weird.key"):
        detect_layout({"weird.key": ONE})


def test_swin_names_move_stage_and_mlp_and_drop_the_head():
    state = OrderedDict([("layers.2.blocks.1.mlp.fc1.weight", ONE), ("norm.weight", ONE),
                         ("norm1.bias", ONE), ("head.weight", ONE),
                         ("layers.0.blocks.0.attn.relative_position_index", ONE)])
    converted, dropped = convert_state_dict(state, "official_swin")
    assert list(converted) == ["swin.layers3.0.blocks.1.mlp.linear1.weight",
                               "output_norms.3.weight", "output_norms.1.bias"]
    assert dropped == ["head.weight", "layers.0.blocks.0.attn.relative_position_index"]


def test_timm_merge_opening_stage_two_closes_stage_one():
    converted, _ = convert_state_dict({"layers.2.downsample.norm.weight": ONE}, "timm_swin")
    assert list(converted) == ["swin.layers2.0.downsample.norm.weight"]


def test_vit_cls_row_of_pos_embed_is_folded_into_the_cls_token():
    state = {"cls_token": torch.full((1, 1, 2), 10.0),
             "pos_embed": torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])}
    converted, _ = convert_state_dict(state, "timm_vit")
    assert converted["vit.cls_token"].tolist() == [[[11.0, 12.0]]]
    assert converted["vit.patch_embedding.position_embeddings"].tolist() == [[[3.0, 4.0],
                                                                             [5.0, 6.0]]]


def test_two_sources_on_one_name_is_an_error():
    clash = KeyMap("clash", "test", rules=((r"^(a|b)\.", "x."),))
    with pytest.raises(CheckpointError, match="'a.w' and 'b.w' both map to 'x.w'"):
        convert_state_dict({"a.w": ONE, "b.w": ONE}, clash)


class _Grey(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = nn.Module()
        self.resnet.conv1 = nn.Conv2d(1, 2, 1, bias=False)
        self.resnet.bn1 = nn.BatchNorm2d(2)


def test_rgb_first_conv_is_summed_for_a_grey_input_and_reported():
    weight = torch.arange(6.0).reshape(2, 3, 1, 1)  # rows (0, 1, 2) and (3, 4, 5)
    model = nn.Module()
    model.image_encoder = _Grey()
    report = load_published_weights(model, {"conv1.weight": weight}, "torchvision_resnet")
    assert report.channel_summed == ["image_encoder.resnet.conv1.weight"]
    assert model.image_encoder.resnet.conv1.weight.flatten().tolist() == [3.0, 12.0]
    assert report.missing == ["image_encoder.resnet.bn1.weight", "image_encoder.resnet.bn1.bias",
                              "image_encoder.resnet.bn1.running_mean",
                              "image_encoder.resnet.bn1.running_var"]


def test_strict_load_copies_nothing_when_incomplete():
    model = _Grey()
    before = model.resnet.conv1.weight.clone()
    with pytest.raises(CheckpointError, match="strict.*missing 4"):
        load_published_weights(model, {"conv1.weight": torch.ones(2, 1, 1, 1)},
                               "torchvision_resnet", strict=True)
    assert torch.equal(model.resnet.conv1.weight, before)


def test_the_backbone_is_found_under_its_module_path():
    model_keys = ["camera_encoder.backbone.resnet.conv1.weight",
                  "camera_encoder.backbone.resnet.bn1.weight", "head.conv1.weight"]
    assert find_target_prefix(model_keys, ["resnet.conv1.weight", "resnet.bn1.weight"]) == \
        "camera_encoder.backbone."
    with pytest.raises(CheckpointError, match="exists in the model"):
        find_target_prefix(model_keys, ["vit.norm.weight"])


def test_checkpoint_map_converts_parts_and_passes_the_rest_through():
    whole = CheckpointMap("two_parts", "test", parts=(
        ("enc.model.", "image_encoder.", "torchvision_resnet"),
        ("proj.", "head.", KeyMap("proj", "test", rules=((r"^w$", "weight"),)))))
    model = nn.Module()
    model.image_encoder = _Grey()
    model.head = nn.Linear(1, 1, bias=False)
    state = {"enc.model.conv1.weight": torch.ones(2, 1, 1, 1), "proj.w": torch.ones(1, 1),
             "extra.layer": ONE, "enc.model.fc.weight": ONE}
    report = load_published_weights(model, {"state_dict": state}, whole, target_prefix="")
    assert sorted(report.loaded) == ["head.weight", "image_encoder.resnet.conv1.weight"]
    assert report.unexpected == ["extra.layer"]
    assert report.dropped == ["enc.model.fc.weight"]


def test_published_layouts_are_pretrained_key_maps(tmp_path):
    from interlace.core.engine.pretrained_init import PretrainedKeyMapInit

    model = nn.Module()
    model.image_encoder = _Grey()
    weight = torch.arange(6.0).reshape(2, 3, 1, 1)
    torch.save({"state_dict": {"img_encoder_q.model.conv1.weight": weight}},
               tmp_path / "mgca.ckpt")
    init = PretrainedKeyMapInit(checkpoint=str(tmp_path / "mgca.ckpt"),
                                key_map="torchvision_resnet", prefix="img_encoder_q.model.",
                                target="image_encoder")
    init(model)
    assert model.image_encoder.resnet.conv1.weight.flatten().tolist() == [3.0, 12.0]
    assert init.report.loaded == ["resnet.conv1.weight"]
