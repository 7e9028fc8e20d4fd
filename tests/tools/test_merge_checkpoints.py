"""tools/model_converters/merge_checkpoints.py: a LiDAR-only checkpoint and an
ImageNet-layout ResNet merge into the DeepInteraction detector's keys; the report says where
every key came from; the file loads with weights_only=True and is never left half written."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from interlace.core.engine.cli import ToolError
from interlace.core.engine.registry import MODELS, register_all_modules
from interlace.domains.driving.models import detectors  # noqa: F401  registers the detectors
from interlace.domains.driving.models.camera import MonaiResNetBackbone
from tests.fixtures.tools import ROOT

LIDAR_TINY = str(ROOT / "configs" / "driving" / "transfusion_l_synthetic_tiny.py")
FUSION_TINY = str(ROOT / "configs" / "driving" / "deepinteraction_r18_synthetic_tiny.py")


@pytest.fixture(scope="module")
def tool():
    from interlace.tools import merge_checkpoints
    return merge_checkpoints


@pytest.fixture(scope="module")
def lidar_model():
    register_all_modules()
    init_default_scope("interlace")
    torch.manual_seed(1)
    model = MODELS.build(Config.fromfile(LIDAR_TINY).model)
    # Non-default BN statistics, so a copy is told apart from a fresh initialisation.
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.uniform_(-1, 1)
    return model


@pytest.fixture(scope="module")
def lidar_ckpt(lidar_model, tmp_path_factory):
    """Saved as mmengine's CheckpointHook does (plus plain-typed extras)."""
    path = tmp_path_factory.mktemp("ckpt") / "transfusion_l.pth"
    torch.save({"meta": {"epoch": 4, "iter": 100}, "state_dict": lidar_model.state_dict(),
                "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


@pytest.fixture(scope="module")
def resnet_state():
    """A ResNet-18 in torchvision's ImageNet layout (``conv1.weight``, ..., ``fc.*``)."""
    torch.manual_seed(2)
    backbone = MonaiResNetBackbone(depth=18)
    state = OrderedDict((k[len("resnet."):], v.clone()) for k, v in backbone.state_dict().items())
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return state


@pytest.fixture(scope="module")
def resnet_ckpt(resnet_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.save(resnet_state, path)
    return path


@pytest.fixture(scope="module")
def merged(tool, lidar_ckpt, resnet_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged")
    assert tool.main([FUSION_TINY, "--lidar", str(lidar_ckpt), "--image", str(resnet_ckpt),
                      "--out", str(out / "init.pth"), "--report", str(out / "init.json")]) == 0
    return out


def test_help_shows_examples(tool, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--help"])
    text = capsys.readouterr().out
    assert "--lidar" in text and "--image" in text and "examples:" in text
    assert ("python tools/model_converters/merge_checkpoints.py "
            "configs/driving/deepinteraction_r50_nus.py") in text


def test_lidar_stream_and_head_come_from_the_lidar_only_checkpoint(merged, lidar_model):
    state = torch.load(merged / "init.pth", weights_only=True)["state_dict"]
    source = lidar_model.state_dict()
    lidar_keys = [k for k in source if k.startswith("lidar_encoder.")]
    assert lidar_keys and all(torch.equal(state[k], source[k]) for k in lidar_keys)
    # The LiDAR-only heatmap is the one DI++ averages in.
    for key, value in source.items():
        if key.startswith("bbox_head.heatmap_conv."):
            renamed = key.replace("heatmap_conv", "lidar_only_heatmap_conv")
            assert torch.equal(state[renamed], value)
    # The first decoder layer (a LiDAR layer in both) and its heads.
    for key in ("bbox_head.decoder.layers.0.ffn.0.weight", "bbox_head.decoder.heads.0.center.0.weight"):
        if key in source:
            assert torch.equal(state[key], source[key])
    assert any(k.startswith("bbox_head.decoder.layers.0.") for k in state)
    # The LiDAR-only decoder's BEV projection becomes the BEV stream's projection.
    assert torch.equal(state["bev_proj.weight"], source["bbox_head.decoder.input_proj.weight"])


def test_image_backbone_comes_from_the_imagenet_file(merged, resnet_state):
    state = torch.load(merged / "init.pth", weights_only=True)["state_dict"]
    for key, value in resnet_state.items():
        if key.startswith("fc."):
            assert f"camera_encoder.backbone.resnet.{key}" not in state
        else:
            assert torch.equal(state[f"camera_encoder.backbone.resnet.{key}"], value)


def test_report_lists_sources_and_what_stays_random(merged):
    report = json.loads((merged / "init.json").read_text())
    assert report["from_lidar"]["bbox_head.lidar_only_heatmap_conv.0.weight"] == \
        "bbox_head.heatmap_conv.0.weight"
    assert "camera_encoder.backbone.resnet.conv1.weight" in report["from_image"]
    random = set(report["random"])
    assert any(k.startswith("interaction_encoder.") for k in random)
    assert any(k.startswith("bbox_head.decoder.layers.1.") for k in random)  # camera layer
    assert any(k.startswith("camera_encoder.neck.") for k in random)
    assert "bbox_head.heatmap_conv.0.weight" in random  # reads the 32-ch interacted BEV
    assert not set(report["from_lidar"]) & random and not set(report["from_image"]) & random
    meta = torch.load(merged / "init.pth", weights_only=True)["meta"]
    assert meta["random"] == report["random"]


def test_merged_file_loads_into_the_detector_with_no_unexpected_key(merged, lidar_model):
    torch.manual_seed(3)
    model = MODELS.build(Config.fromfile(FUSION_TINY).model)
    state = torch.load(merged / "init.pth", weights_only=True)["state_dict"]
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    model.eval()
    lidar_model.eval()
    points = torch.rand(3000, 5) * torch.tensor([40.0, 40.0, 4.0, 1.0, 0.1]) - \
        torch.tensor([20.0, 20.0, 2.0, 0.0, 0.0])
    voxels = model.data_preprocessor._voxelize([points], training=False)
    with torch.no_grad():
        torch.testing.assert_close(model.lidar_encoder(voxels, 1),
                                   lidar_model.lidar_encoder(voxels, 1))


def test_mmdet3d_lidar_names_and_our_detector_as_image_source(tool, lidar_model, tmp_path):
    renamed = OrderedDict()
    for key, value in lidar_model.state_dict().items():
        for ours, theirs in (("lidar_encoder.middle_encoder.", "pts_middle_encoder."),
                             ("lidar_encoder.backbone.", "pts_backbone."),
                             ("lidar_encoder.neck.", "pts_neck.")):
            if key.startswith(ours):
                key = theirs + key[len(ours):]
        renamed[key] = value
    torch.save({"state_dict": renamed}, tmp_path / "mmdet3d.pth")
    torch.manual_seed(4)
    detector = MODELS.build(Config.fromfile(FUSION_TINY).model)
    torch.save({"state_dict": detector.state_dict()}, tmp_path / "di.pth")
    tool.main([FUSION_TINY, "--lidar", str(tmp_path / "mmdet3d.pth"), "--image",
               str(tmp_path / "di.pth"), "--out", str(tmp_path / "out.pth")])
    state = torch.load(tmp_path / "out.pth", weights_only=True)["state_dict"]
    key = "lidar_encoder.middle_encoder.conv_input.0.weight"
    assert torch.equal(state[key], lidar_model.state_dict()[key])
    key = "camera_encoder.neck.lateral_convs.0.weight"
    if key in detector.state_dict():
        assert torch.equal(state[key], detector.state_dict()[key])
    assert torch.equal(state["camera_encoder.backbone.resnet.conv1.weight"],
                       detector.state_dict()["camera_encoder.backbone.resnet.conv1.weight"])


def test_failed_write_leaves_no_file(tool, lidar_ckpt, tmp_path, monkeypatch):
    def broken_save(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        tool.main([FUSION_TINY, "--lidar", str(lidar_ckpt), "--out", str(tmp_path / "x.pth")])
    assert list(tmp_path.iterdir()) == []


def test_nothing_to_merge_is_an_error(tool, tmp_path):
    with pytest.raises(ToolError, match="--lidar"):
        tool.main([FUSION_TINY, "--out", str(tmp_path / "x.pth")])
    torch.save({"state_dict": {"unrelated.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(ToolError, match="no checkpoint tensor matched"):
        tool.main([FUSION_TINY, "--lidar", str(tmp_path / "other.pth"),
                   "--out", str(tmp_path / "x.pth")])
    assert not (tmp_path / "x.pth").exists()
