"""Start a model from another model's weights: ``init_cfg=dict(type='Pretrained', ...)``.

The one way Interlace starts a model from weights trained elsewhere: the fusion detector
from a LiDAR-only checkpoint, a segmentor from its pre-training run, a probe or U-Net from
MGCA. It is mmengine's ``Pretrained`` initialiser (same arguments, registered under the same
name in the ``interlace`` scope, so mmengine applies it after every other initialiser)
with two additions, ``key_map`` and ``target``, and checkpoints read with
``weights_only=True``. The Runner applies it when training starts
(``model.init_weights()``), so ``tools/train.py CONFIG`` does exactly what the config says.

Where names differ, a key map renames the checkpoint's keys into the model's:

- a list of ``(regex, replacement)`` pairs applied in order with :func:`re.sub`, or
- the name of a *state converter* registered with :func:`register_state_converter`, for
  maps that need the target's names and shapes (the driving two-stage start). A converter
  is ``fn(source_state, target_state) -> dict`` of target keys.

``checkpoint`` may be a file or a work dir; a work dir means the checkpoint its
``last_checkpoint`` file names (what CheckpointHook and TimeBudgetHook write), so a config
can point at the run it starts from before that run exists. The key maps in use are
listed in docs/weights.md.
"""
from __future__ import annotations

import os
import os.path as osp
from collections import OrderedDict
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from mmengine.model.weight_init import BaseInit

from .checkpoint import (CheckpointError, LoadReport, _map_keys, copy_matching_weights,
                         extract_state_dict, load_checkpoint_file)
from .registry import WEIGHT_INITIALIZERS

__all__ = ["PretrainedKeyMapInit", "register_state_converter", "resolve_checkpoint",
           "STATE_CONVERTERS"]

StateDict = Mapping[str, torch.Tensor]
StateConverter = Callable[[StateDict, StateDict], Mapping[str, torch.Tensor]]
STATE_CONVERTERS: dict[str, StateConverter] = {}


def register_state_converter(name: str) -> Callable[[StateConverter], StateConverter]:
    """Decorator: make `fn(source_state, target_state) -> mapped state` usable as
    ``key_map=name``."""
    def wrap(fn: StateConverter) -> StateConverter:
        if name in STATE_CONVERTERS and STATE_CONVERTERS[name] is not fn:
            raise KeyError(f"state converter {name!r} is registered twice")
        STATE_CONVERTERS[name] = fn
        return fn
    return wrap


def resolve_checkpoint(path: str) -> str:
    """`path` if it is a file; for a folder, the checkpoint its ``last_checkpoint`` names."""
    if osp.isdir(path):
        marker = osp.join(path, "last_checkpoint")
        if not osp.isfile(marker):
            raise CheckpointError(f"{path} is a folder without a last_checkpoint file: train "
                                  "the run it names first, or give a checkpoint file")
        with open(marker, encoding="utf-8") as handle:
            named = handle.read().strip()
        if not osp.isabs(named) and not osp.isfile(named):
            named = osp.join(path, osp.basename(named))
        path = named
    if not osp.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def _apply_key_map(state: StateDict, key_map: Union[str, Sequence, None],
                   target: StateDict, path: str) -> "OrderedDict[str, torch.Tensor]":
    if key_map is None:
        return OrderedDict(state)
    if isinstance(key_map, str):
        if key_map not in STATE_CONVERTERS:
            raise CheckpointError(f"unknown key_map {key_map!r} for {path}; registered: "
                                  f"{sorted(STATE_CONVERTERS)} (the domain that defines it "
                                  "must be imported)")
        return OrderedDict(STATE_CONVERTERS[key_map](state, target))
    return _map_keys(state, key_map, None, path)


@WEIGHT_INITIALIZERS.register_module(name="Pretrained")
class PretrainedKeyMapInit(BaseInit):
    """Load weights from a local checkpoint, renamed by a key map, into the module.

    Args:
        checkpoint: a checkpoint file, or a work dir (its ``last_checkpoint``).
        key_map: list of ``(regex, replacement)`` pairs or a registered converter's name.
        prefix: keep only checkpoint keys starting with this, and strip it.
        target: dotted name of the submodule to load into (default: the whole module).
        strict: fail unless every target key is loaded and every checkpoint key used.
        map_location: as for :func:`torch.load`.
    """

    def __init__(self, checkpoint: str, key_map: Union[str, Sequence, None] = None,
                 prefix: Optional[str] = None, target: Optional[str] = None,
                 strict: bool = False, map_location: str = "cpu", **kwargs) -> None:
        super().__init__(**kwargs)
        self.checkpoint, self.key_map, self.prefix = checkpoint, key_map, prefix
        self.target, self.strict, self.map_location = target, strict, map_location
        self.report: Optional[LoadReport] = None

    def __call__(self, module: torch.nn.Module) -> None:
        path = resolve_checkpoint(os.fspath(self.checkpoint))
        state = extract_state_dict(load_checkpoint_file(path, map_location=self.map_location))
        if self.prefix:
            state = OrderedDict((k[len(self.prefix):], v) for k, v in state.items()
                                if k.startswith(self.prefix))
            if not state:
                raise CheckpointError(f"no key of {path} starts with prefix '{self.prefix}'")
        receiver = module.get_submodule(self.target) if self.target else module
        target = receiver.state_dict()
        mapped = _apply_key_map(state, self.key_map, target, path)
        if not any(key in target for key in mapped):
            raise CheckpointError(f"no key of {path} fits {type(receiver).__name__} after the "
                                  f"key map (first keys: {', '.join(list(mapped)[:5])})")
        report = copy_matching_weights(receiver, mapped, path, self.strict)
        self.report = report
        print_log(f"Pretrained: {path} -> {type(receiver).__name__}"
                  f"{' (' + self.target + ')' if self.target else ''}: {report.summary()}",
                  logger="current")

    def _get_init_info(self) -> str:
        return f"{self.__class__.__name__}: load from {self.checkpoint}"
