"""init_cfg=dict(type='Pretrained', ...): key maps, work dirs, converters, clear errors."""
from __future__ import annotations

import pytest
import torch
from mmengine.model import BaseModule
from mmengine.registry import init_default_scope

from interlace.core.engine.checkpoint import CheckpointError
from interlace.core.engine.pretrained_init import STATE_CONVERTERS, register_state_converter


class _Net(BaseModule):
    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.encoder = torch.nn.Linear(3, 4)
        self.head = torch.nn.Linear(4, 2)


def _save(path, state):
    torch.save({"state_dict": state, "meta": {}}, path)
    return str(path)


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope("interlace")


def test_regex_key_map_renames_into_the_model_and_leaves_the_rest(tmp_path):
    source = _Net()
    state = {k.replace("encoder.", "backbone.stem."): v for k, v in source.state_dict().items()
             if k.startswith("encoder.")}
    path = _save(tmp_path / "pre.pth", state)
    net = _Net(init_cfg=dict(type="Pretrained", checkpoint=path,
                             key_map=[(r"^backbone\.stem\.", "encoder.")]))
    head_before = net.head.weight.detach().clone()
    net.init_weights()
    assert torch.equal(net.encoder.weight, source.encoder.weight)
    assert torch.equal(net.encoder.bias, source.encoder.bias)
    assert torch.equal(net.head.weight, head_before)  # no checkpoint key for the head


def test_a_work_dir_means_its_last_checkpoint(tmp_path):
    source = _Net()
    ckpt = _save(tmp_path / "iter_5.pth", source.state_dict())
    (tmp_path / "last_checkpoint").write_text(ckpt)
    net = _Net(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path)))
    net.init_weights()
    assert torch.equal(net.head.weight, source.head.weight)


def test_prefix_and_target_load_a_submodule(tmp_path):
    source = _Net()
    path = _save(tmp_path / "whole.pth", {f"model.{k}": v for k, v in source.state_dict().items()})
    net = _Net(init_cfg=dict(type="Pretrained", checkpoint=path, prefix="model.encoder.",
                             target="encoder"))
    net.init_weights()
    assert torch.equal(net.encoder.weight, source.encoder.weight)


def test_a_registered_converter_gets_source_and_target(tmp_path):
    seen = {}

    @register_state_converter("test_swap_heads")
    def swap(source, target):
        seen["target_keys"] = sorted(target)
        return {"head.weight": source["other.weight"]}

    try:
        weight = torch.full((2, 4), 3.0)
        path = _save(tmp_path / "other.pth", {"other.weight": weight})
        net = _Net(init_cfg=dict(type="Pretrained", checkpoint=path, key_map="test_swap_heads"))
        net.init_weights()
        assert torch.equal(net.head.weight, weight)
        assert "encoder.weight" in seen["target_keys"]
    finally:
        STATE_CONVERTERS.pop("test_swap_heads")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="without a last_checkpoint"):
        _Net(init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path))).init_weights()
    path = _save(tmp_path / "x.pth", {"unrelated.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no key of .*x.pth fits"):
        _Net(init_cfg=dict(type="Pretrained", checkpoint=path)).init_weights()
    with pytest.raises(CheckpointError, match="unknown key_map 'nope'"):
        _Net(init_cfg=dict(type="Pretrained", checkpoint=path, key_map="nope")).init_weights()
    source = _Net()
    path = _save(tmp_path / "part.pth", {k: v for k, v in source.state_dict().items()
                                          if k.startswith("encoder.")})
    with pytest.raises(CheckpointError, match="strict.*missing 2"):
        _Net(init_cfg=dict(type="Pretrained", checkpoint=path, strict=True)).init_weights()
