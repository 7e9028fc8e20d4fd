"""Safe checkpoint loading: clear errors, mmengine checkpoints under weights_only=True,
Runner.resume, and key-mapped weight loading."""
from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader

from interlace.core.engine.checkpoint import (CheckpointError, UnsafeCheckpointError,
                                              extract_state_dict, install_safe_checkpoint_loader,
                                              load_backbone_weights, load_checkpoint_file,
                                              load_from_safe_local, load_weights)

TOY_CONFIG = Path(__file__).resolve().parents[2] / "fixtures" / "toy_config.py"


def _train_toy(work_dir: Path, **overrides) -> Runner:
    cfg = Config.fromfile(str(TOY_CONFIG))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f"toy_{uuid.uuid4().hex[:8]}"  # runners in one second must differ
    cfg.merge_from_dict(overrides)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Work dir of an uninterrupted 2-epoch toy run (epoch_1.pth, epoch_2.pth)."""
    work_dir = tmp_path_factory.mktemp("toy_train")
    _train_toy(work_dir)
    return work_dir


# --- errors naming the file ---------------------------------------------------------------

def test_missing_file_error_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "epoch_9.pth"
    with pytest.raises(FileNotFoundError, match="epoch_9.pth"):
        load_checkpoint_file(path)


def test_pickled_module_is_refused_as_not_a_state_dict(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path)
    message = str(info.value)
    assert str(path) in message and "not a state dict" in message
    assert "torch.nn.modules.linear.Linear" in message


def test_list_and_tensor_are_rejected_naming_the_type(tmp_path):
    for obj, kind in (([1, 2], "builtins.list"), (torch.zeros(3), "torch.Tensor")):
        path = tmp_path / f"{kind}.pt"
        torch.save(obj, path)
        with pytest.raises(CheckpointError,
                           match=f"{path}.* is not a state dict or checkpoint: it holds a {kind}"):
            load_checkpoint_file(path)


def test_unreadable_file_raises_checkpoint_error_with_reason(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x02not really a checkpoint" * 5)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"garbage\.pth cannot be read by torch.load: \S+"):
        load_checkpoint_file(garbage)
    with pytest.raises(CheckpointError, match="empty.pth cannot be read: the file is empty"):
        load_checkpoint_file(empty)
    assert issubclass(CheckpointError, ValueError) and issubclass(CheckpointError, RuntimeError)


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_global_is_refused_under_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _RunsShell(marker)}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(path)
    message = str(info.value)
    assert str(path) in message and "system" in info.value.refused
    assert f"'{info.value.refused}'" in message and "weights_only=False" in message
    assert "trust" in message and not marker.exists()
    assert isinstance(info.value, pickle.UnpicklingError)  # callers catching torch's error


class _ReachesPastTheAllowlist:
    def __reduce__(self):  # pickled as builtins.getattr, which we bind to a restricted one
        return (getattr, (HistoryBuffer, "__init__"))


def test_getattr_allowlist_only_hands_out_history_buffer_statistics(tmp_path):
    path = tmp_path / "getattr.pth"
    torch.save({"x": _ReachesPastTheAllowlist()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"getattr\(HistoryBuffer, '__init__'\)"):
        load_checkpoint_file(path)


# --- mmengine checkpoints --------------------------------------------------------------------

def test_mmengine_checkpoint_loads_with_weights_only(trained):
    checkpoint = load_checkpoint_file(trained / "epoch_1.pth", weights_only=True)
    assert {"meta", "state_dict", "message_hub", "optimizer", "param_schedulers"} <= set(checkpoint)
    assert checkpoint["meta"]["epoch"] == 1
    buffers = checkpoint["message_hub"]["log_scalars"]
    assert isinstance(buffers["train/loss"], HistoryBuffer)
    assert buffers["train/loss"].mean() > 0
    assert extract_state_dict(checkpoint).keys() == {"linear.weight", "linear.bias"}
    # The allowlist applies to our loads only; plain torch.load stays as strict as before.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(trained / "epoch_1.pth", weights_only=True)


def test_install_is_idempotent_and_only_replaces_the_local_scheme():
    install_safe_checkpoint_loader()
    assert install_safe_checkpoint_loader() is False
    assert CheckpointLoader._get_checkpoint_loader("work_dirs/x/epoch_1.pth") is load_from_safe_local
    assert CheckpointLoader._get_checkpoint_loader("https://host/x.pth") is not load_from_safe_local


def test_runner_resume_continues_to_epoch_2_with_identical_weights(trained, tmp_path):
    install_safe_checkpoint_loader()
    runner = _train_toy(tmp_path, resume=True, load_from=str(trained / "epoch_1.pth"))
    assert runner.epoch == 2
    assert (tmp_path / "epoch_2.pth").is_file() and not (tmp_path / "epoch_1.pth").exists()
    resumed = torch.load(tmp_path / "weights_rank0.pt", weights_only=True)
    uninterrupted = torch.load(trained / "weights_rank0.pt", weights_only=True)
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value)


# --- state dicts and key mapping --------------------------------------------------------------

class _ResNetish(torch.nn.Module):
    """The names of a torchvision ResNet's stem and first block, tiny."""

    def __init__(self, width: int = 4, bn_width: int = 4) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(bn_width)
        self.layer1 = torch.nn.Sequential(torch.nn.Module())
        self.layer1[0].conv1 = torch.nn.Conv2d(width, width, 3, bias=False)


class _Wrapped(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _ResNetish(bn_width=6)  # bn1 differs in width from the checkpoint
        self.neck = torch.nn.Linear(4, 2)


def _torchvision_style_file(tmp_path: Path) -> tuple[Path, dict]:
    source = _ResNetish()
    state = dict(source.state_dict())
    state["fc.weight"] = torch.randn(10, 4)
    path = tmp_path / "resnet_tv.pth"
    torch.save(state, path)
    return path, state


def test_key_mapping_renames_copies_and_reports(tmp_path):
    path, state = _torchvision_style_file(tmp_path)
    target = _Wrapped()
    bn_before = target.backbone.bn1.weight.detach().clone()
    report = load_backbone_weights(target, path, key_mapping=[(r"^", "backbone.")])

    assert "backbone.layer1.0.conv1.weight" in report.loaded
    torch.testing.assert_close(target.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    torch.testing.assert_close(target.backbone.conv1.weight, state["conv1.weight"])
    assert report.unexpected == ["backbone.fc.weight"]
    assert {"neck.weight", "neck.bias"} <= set(report.missing)
    mismatched = {k: (c, m) for k, c, m in report.shape_mismatched}
    assert mismatched["backbone.bn1.weight"] == ((4,), (6,))
    assert "backbone.bn1.weight" not in report.missing
    torch.testing.assert_close(target.backbone.bn1.weight, bn_before)  # skipped, untouched
    assert "shape-mismatched" in report.summary() and "(4,) vs model (6,)" in report.summary()


def test_source_prefix_and_ddp_module_prefix_are_stripped(tmp_path):
    inner = _ResNetish()
    state = {f"module.backbone.{k}": v for k, v in inner.state_dict().items()}
    state["module.head.weight"] = torch.randn(3, 3)
    path = tmp_path / "ddp_detector.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": state}, path)

    target = _ResNetish()
    report = load_backbone_weights(target, path, source_prefix="backbone.")
    assert report.complete and report.unexpected == []
    torch.testing.assert_close(target.conv1.weight, inner.conv1.weight)


def test_strict_load_raises_before_copying_anything(tmp_path):
    path, _ = _torchvision_style_file(tmp_path)
    target = _Wrapped()
    before = target.backbone.conv1.weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"resnet_tv.pth.*_Wrapped.*missing"):
        load_weights(target, path, strict=True, key_mapping=[(r"^", "backbone.")])
    torch.testing.assert_close(target.backbone.conv1.weight, before)


def test_extract_state_dict_without_tensors_lists_the_keys_found():
    with pytest.raises(CheckpointError, match=r"keys are 'meta', 'notes'"):
        extract_state_dict({"meta": {"epoch": 1}, "notes": "no weights here"})
    plain = extract_state_dict({"module.a": torch.ones(1), "b": torch.zeros(1)})
    assert list(plain) == ["a", "b"]


def test_mapping_two_keys_onto_one_is_an_error(tmp_path):
    path = tmp_path / "two.pth"
    torch.save({"a.weight": torch.ones(1), "b.weight": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="sends both 'a.weight' and 'b.weight'"):
        load_backbone_weights(torch.nn.Linear(1, 1), path, key_mapping=[(r"^[ab]\.", "")])
