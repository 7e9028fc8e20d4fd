"""tools/analysis_tools/convert_checkpoint.py: a published file in, an Interlace checkpoint
out, with the key counts printed; the output loads with weights_only=True into the model."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from interlace.core.engine.checkpoint import load_checkpoint_file
from interlace.core.engine.cli import ToolError
from interlace.core.engine.registry import MODELS, register_all_modules
from interlace.tools.convert_checkpoint import main
from tests.fixtures.tools import ROOT, run_tool

TOOL = "tools/analysis_tools/convert_checkpoint.py"
TINY_FUSION = ROOT / "configs" / "driving" / "deepinteraction_r18_synthetic_tiny.py"
TINY_MGCA = ROOT / "configs" / "medical" / "mgca_resnet18_synthetic_tiny.py"


def _torchvision_resnet18(path):
    """torchvision's resnet18 file layout (122 tensors with fc), from our MONAI ResNet-18."""
    from interlace.domains.medical.models.image_encoders import ResNetImageEncoder
    generator = torch.Generator().manual_seed(0)
    encoder = ResNetImageEncoder(depth=18, in_channels=3)
    state = OrderedDict((k[len("resnet."):], torch.randn(v.shape, generator=generator)
                         if v.is_floating_point() else v) for k, v in encoder.state_dict().items())
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    assert len(state) == 122
    torch.save(state, path)
    return state


def test_help_has_an_example():
    result = run_tool(TOOL, "--help")
    assert result.returncode == 0
    assert "--from torchvision" in result.stdout and "--config" in result.stdout


def test_torchvision_file_into_the_tiny_fusion_config(tmp_path, capsys):
    source = _torchvision_resnet18(tmp_path / "resnet18-f37072fd.pth")
    assert main([str(tmp_path / "resnet18-f37072fd.pth"), str(tmp_path / "di_tiny.pth"),
                 "--from", "torchvision", "--config", str(TINY_FUSION),
                 "--json", str(tmp_path / "counts.json")]) == 0
    out = capsys.readouterr().out
    assert "(torchvision_resnet)" in out
    assert "loaded 120, missing 0, unexpected 0, shape_mismatched 0, dropped 2" in out
    assert '"loaded": 120' in (tmp_path / "counts.json").read_text()
    checkpoint = load_checkpoint_file(str(tmp_path / "di_tiny.pth"), weights_only=True)
    assert checkpoint["meta"]["counts"]["loaded"] == 120
    state = checkpoint["state_dict"]
    assert torch.equal(state["camera_encoder.backbone.resnet.layer4.1.conv2.weight"],
                       source["layer4.1.conv2.weight"])
    register_all_modules()
    init_default_scope("interlace")
    model = MODELS.build(Config.fromfile(str(TINY_FUSION)).model)
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert not missing and not unexpected


def test_without_a_config_the_renamed_tensors_are_written(tmp_path, capsys):
    _torchvision_resnet18(tmp_path / "r18.pth")
    assert main([str(tmp_path / "r18.pth"), str(tmp_path / "out.pth"), "--from",
                 "torchvision"]) == 0
    assert "converted 120, dropped 2" in capsys.readouterr().out
    state = load_checkpoint_file(str(tmp_path / "out.pth"), weights_only=True)["state_dict"]
    assert "resnet.conv1.weight" in state and "fc.weight" not in state


def test_wrong_family_and_mgca_without_config_are_clear_errors(tmp_path):
    _torchvision_resnet18(tmp_path / "r18.pth")
    with pytest.raises(ToolError, match="torchvision_resnet.*not a timm file"):
        main([str(tmp_path / "r18.pth"), str(tmp_path / "out.pth"), "--from", "timm"])
    with pytest.raises(ToolError, match="give --config"):
        main([str(tmp_path / "r18.pth"), str(tmp_path / "out.pth"), "--from", "mgca"])
    assert not (tmp_path / "out.pth").exists()


def test_mgca_checkpoint_into_the_tiny_mgca_config(tmp_path, capsys):
    register_all_modules()
    init_default_scope("interlace")
    ours = MODELS.build(Config.fromfile(str(TINY_MGCA)).model).state_dict()
    state = OrderedDict(("img_encoder_q.model." + k[len("image_encoder.resnet."):], v)
                        for k, v in ours.items() if k.startswith("image_encoder."))
    state.update(("text_encoder_q.model." + k[len("text_encoder.model."):], v)
                 for k, v in ours.items() if k.startswith("text_encoder.model."))
    state["img_encoder_q.model.conv1.weight"] = torch.randn(64, 3, 7, 7)
    state["prototype_layer.weight"] = ours["prototype_loss.prototypes.weight"]
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": {}},
               tmp_path / "mgca.ckpt")
    assert main([str(tmp_path / "mgca.ckpt"), str(tmp_path / "mgca.pth"), "--from", "mgca",
                 "--config", str(TINY_MGCA)]) == 0
    out = capsys.readouterr().out
    assert "(mgca_lightning)" in out
    image, text = 122 - 2, sum(k.startswith("text_encoder.model.") for k in ours)
    # no projection heads in this file: 4 heads x 10 tensors (their BatchNorm step counters
    # are not counted missing) + instance_loss.logit_scale
    assert f"loaded {image + text + 1}, missing {4 * 10 + 1}, unexpected 0" in out
    converted = load_checkpoint_file(str(tmp_path / "mgca.pth"), weights_only=True)
    assert torch.equal(converted["state_dict"]["image_encoder.resnet.conv1.weight"],
                       state["img_encoder_q.model.conv1.weight"].sum(1, keepdim=True))
