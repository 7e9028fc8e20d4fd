"""Loading published weight files under Interlace's names, and converting them to Interlace
checkpoints (``tools/analysis_tools/convert_checkpoint.py``).

The key maps are data in :mod:`.weight_key_maps` (tables there and in ``docs/weights.md``).
:func:`load_published_weights` reads a file (``weights_only=True``), renames its keys by a
map, and copies the tensors whose names and shapes match into a module, reporting what it
did (:class:`WeightLoadReport`: loaded, missing, unexpected, shape-mismatched, dropped by
the map, RGB input convolutions summed for a one-channel model).
:func:`convert_checkpoint_file` writes the result as an Interlace checkpoint.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from .atomic_files import atomic_path
from .pretrained_init import register_state_converter
from .checkpoint import (CheckpointError, LoadReport, PathLike, extract_state_dict,
                         load_checkpoint_file)
from .weight_key_maps import (CHECKPOINT_MAPS, DERIVED_BUFFERS, KEY_MAPS, SOURCE_FAMILIES,
                              CheckpointMap, KeyMap, detect_layout, swin_unfold_to_concat)

__all__ = ["KeyMap", "CheckpointMap", "KEY_MAPS", "CHECKPOINT_MAPS", "SOURCE_FAMILIES",
           "DERIVED_BUFFERS", "WeightLoadReport", "convert_state_dict",
           "convert_checkpoint_state", "convert_checkpoint_file", "copy_converted",
           "detect_layout", "find_target_prefix", "load_published_weights", "read_state_dict",
           "published_layout_converter", "register_published_layout", "source_formats",
           "strip_prefix", "swin_unfold_to_concat"]

StateDict = Mapping[str, Tensor]


# --- conversion and loading -----------------------------------------------------------------

def strip_prefix(state: StateDict, prefix: str, what: str = "the state dict"
                 ) -> "OrderedDict[str, Tensor]":
    """The entries under `prefix`, with it removed; CheckpointError when there are none."""
    out = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
    if not out:
        raise CheckpointError(f"No key of {what} starts with '{prefix}' (first keys: "
                              f"{', '.join(list(state)[:5])}).")
    return out


def convert_state_dict(state: StateDict, key_map: KeyMap | str
                       ) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """Rename `state` by `key_map` (a :class:`KeyMap` or its name).

    Returns:
        (converted state dict, source keys dropped by the map).

    Raises:
        CheckpointError: two source keys land on one name.
    """
    key_map = KEY_MAPS[key_map] if isinstance(key_map, str) else key_map
    if key_map.prepare is not None:
        state = key_map.prepare(state)
    drop = [re.compile(p) for p in key_map.drop]
    rules = [(re.compile(p), r) for p, r in key_map.rules]
    value_rules = [(re.compile(p), f) for p, f in key_map.value_rules]
    converted: OrderedDict[str, Tensor] = OrderedDict()
    origin: dict[str, str] = {}
    dropped = []
    for key, value in state.items():
        if any(p.search(key) for p in drop):
            dropped.append(key)
            continue
        for pattern, function in value_rules:
            if pattern.search(key):
                value = function(value)
        new_key = key
        for pattern, replacement in rules:
            new_key = pattern.sub(replacement, new_key, count=1)
        if new_key in converted:
            raise CheckpointError(f"layout {key_map.name}: '{origin[new_key]}' and '{key}' "
                                  f"both map to '{new_key}'")
        converted[new_key], origin[new_key] = value, key
    return converted, dropped


def convert_checkpoint_state(state: StateDict, checkpoint_map: CheckpointMap,
                             parts: Optional[Sequence[str]] = None
                             ) -> tuple["OrderedDict[str, Tensor]", list[str], list[str]]:
    """Rename a whole checkpoint part by part (:class:`CheckpointMap`).

    Args:
        state: the checkpoint's tensors.
        checkpoint_map: the parts.
        parts: source prefixes to keep (e.g. only the image encoder); None = every part,
            and the keys under no part pass through unchanged.

    Returns:
        (converted state dict, dropped source keys, target keys of input convolutions).
    """
    converted: OrderedDict[str, Tensor] = OrderedDict()
    dropped: list[str] = []
    input_convs: list[str] = []
    claimed: set[str] = set()
    for source_prefix, target_prefix, layout in checkpoint_map.parts:
        if parts is not None and source_prefix not in parts:
            continue
        sub = OrderedDict((k[len(source_prefix):], v) for k, v in state.items()
                          if k.startswith(source_prefix))
        if not sub:
            continue
        claimed.update(source_prefix + k for k in sub)
        key_map = KEY_MAPS[detect_layout(sub)] if layout == "auto" else (
            KEY_MAPS[layout] if isinstance(layout, str) else layout)
        part, part_dropped = convert_state_dict(sub, key_map)
        converted.update((target_prefix + k, v) for k, v in part.items())
        dropped.extend(source_prefix + k for k in part_dropped)
        input_convs.extend(target_prefix + k for k in key_map.input_convs)
    if parts is None:
        converted.update((k, v) for k, v in state.items() if k not in claimed)
    if not converted:
        raise CheckpointError(f"{checkpoint_map.name}: no key under "
                              f"{[p for p, _, _ in checkpoint_map.parts]} (first keys: "
                              f"{', '.join(list(state)[:5])})")
    return converted, dropped, input_convs


@dataclass
class WeightLoadReport(LoadReport):
    """:class:`LoadReport` plus what the key map dropped and which RGB input convolutions
    were summed to one channel."""

    dropped: list[str] = field(default_factory=list)
    channel_summed: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """``{loaded, missing, unexpected, shape_mismatched, dropped}`` sizes."""
        return dict(loaded=len(self.loaded), missing=len(self.missing),
                    unexpected=len(self.unexpected),
                    shape_mismatched=len(self.shape_mismatched), dropped=len(self.dropped))


def read_state_dict(source: PathLike | StateDict, source_prefix: Optional[str] = None
                    ) -> "OrderedDict[str, Tensor]":
    """The tensors of a file (``weights_only=True``; ``state_dict`` / ``model`` wrappers
    unwrapped, DDP's ``module.`` stripped) or of a state dict, under `source_prefix`."""
    if isinstance(source, Mapping):
        state, what = extract_state_dict(source), "the state dict"
    else:
        what = os.fspath(source)
        state = extract_state_dict(load_checkpoint_file(what, map_location="cpu"))
    return strip_prefix(state, source_prefix, what) if source_prefix else state


def find_target_prefix(model_keys: Sequence[str], converted_keys: Sequence[str]) -> str:
    """The module path (``'camera_encoder.backbone.'``, ``'image_encoder.'`` or ``''``)
    under which most converted keys exist in the model.

    Raises:
        CheckpointError: no converted key exists under any module of the model.
    """
    model_keys = set(model_keys)
    prefixes = {k[: len(k) - len(c)] for c in converted_keys[:50] for k in model_keys
                if k.endswith(c) and (len(k) == len(c) or k[len(k) - len(c) - 1] == ".")}
    if not prefixes:
        raise CheckpointError(f"no converted key (e.g. {', '.join(converted_keys[:3])}) "
                              f"exists in the model; wrong layout or model?")
    return max(sorted(prefixes),
               key=lambda p: sum(p + c in model_keys for c in converted_keys))


def _sum_input_channels(value: Tensor, target: Tensor) -> Optional[Tensor]:
    """RGB conv weights (O, 3, ...) for a one-channel target (O, 1, ...), else None."""
    if (value.dim() == target.dim() >= 3 and value.shape[1] == 3 and target.shape[1] == 1
            and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]):
        return value.sum(dim=1, keepdim=True)
    return None


def load_published_weights(module: nn.Module, source: PathLike | StateDict,
                           layout: KeyMap | CheckpointMap | str = "auto", *,
                           source_prefix: Optional[str] = None,
                           target_prefix: Optional[str] = None, family: Optional[str] = None,
                           parts: Optional[Sequence[str]] = None, strict: bool = False,
                           log: bool = True) -> WeightLoadReport:
    """Copy a published file's tensors into `module` under Interlace's names.

    Args:
        module: the receiver: a backbone wrapper, or any model that holds one (the wrapper
            is found by :func:`find_target_prefix` unless `target_prefix` is given).
        source: a weights file (``.pth`` / ``.pt`` / ``.ckpt``, read with
            ``weights_only=True``) or a state dict.
        layout: a :data:`KEY_MAPS` name, a :class:`KeyMap` or :class:`CheckpointMap`;
            ``'auto'`` detects the key map.
        source_prefix: keep only keys under it, stripped (``'backbone.'``, ``'img_backbone.'``).
        target_prefix: where the wrapper sits in `module` (``''`` = `module` itself).
        family: with ``layout='auto'``, the source family (:data:`SOURCE_FAMILIES`).
        parts: with a :class:`CheckpointMap`, the source prefixes to load (None = all).
        strict: raise :class:`CheckpointError` before copying anything unless every key
            of the receiver (below `target_prefix`) got a value of the right shape and
            every converted key was used.
        log: log the report in one line.

    Returns:
        :class:`WeightLoadReport`. Missing and unexpected keys are counted below
        `target_prefix` (the rest of a model is not this file's business).
    """
    what = "state dict" if isinstance(source, Mapping) else os.fspath(source)
    state = read_state_dict(source, source_prefix)
    if isinstance(layout, CheckpointMap):
        converted, dropped, input_convs = convert_checkpoint_state(state, layout, parts)
        name = layout.name
    else:
        key_map = KEY_MAPS[detect_layout(state, family)] if layout == "auto" else (
            KEY_MAPS[layout] if isinstance(layout, str) else layout)
        converted, dropped = convert_state_dict(state, key_map)
        input_convs, name = list(key_map.input_convs), key_map.name
    return copy_converted(module, converted, dropped=dropped, input_convs=input_convs,
                          target_prefix=target_prefix, strict=strict,
                          what=f"{what} ({name})", log=log)


def copy_converted(module: nn.Module, converted: StateDict, *, dropped: Sequence[str] = (),
                   input_convs: Sequence[str] = (), target_prefix: Optional[str] = None,
                   strict: bool = False, what: str = "weights", log: bool = True
                   ) -> WeightLoadReport:
    """Copy already converted tensors into `module` (see :func:`load_published_weights`)."""
    target = module.state_dict()
    if target_prefix is None:
        target_prefix = find_target_prefix(list(target), list(converted))
    report = WeightLoadReport(dropped=list(dropped))
    to_load: OrderedDict[str, Tensor] = OrderedDict()
    input_convs = {target_prefix + k for k in input_convs}
    for key, value in converted.items():
        name = target_prefix + key
        if name not in target:
            report.unexpected.append(name)
            continue
        if tuple(value.shape) != tuple(target[name].shape) and name in input_convs:
            summed = _sum_input_channels(value, target[name])
            if summed is not None:
                value = summed
                report.channel_summed.append(name)
        if tuple(value.shape) != tuple(target[name].shape):
            report.shape_mismatched.append((name, tuple(value.shape), tuple(target[name].shape)))
        else:
            to_load[name] = value
            report.loaded.append(name)
    mismatched = {k for k, _, _ in report.shape_mismatched}
    report.missing = [k for k in target if k.startswith(target_prefix) and k not in to_load
                      and k not in mismatched and not k.endswith(DERIVED_BUFFERS)]
    if strict and not report.complete:
        raise CheckpointError(f"Weights in {what} do not match {type(module).__name__} "
                              f"(strict): {report.summary()}")
    with torch.no_grad():
        module.load_state_dict(to_load, strict=False)
    if log:
        notes = f"; dropped {len(report.dropped)} (classifier head, derived buffers)" \
            if report.dropped else ""
        if report.channel_summed:
            notes += f"; RGB summed to one channel: {', '.join(report.channel_summed)}"
        print_log(f"Loaded {what} into {type(module).__name__}"
                  f"{' under ' + target_prefix if target_prefix else ''}: "
                  f"{report.summary()}{notes}", logger="current")
    return report


def source_formats() -> list[str]:
    """The ``--from`` names: backbone families and registered whole-model checkpoints."""
    return sorted([*SOURCE_FAMILIES, *CHECKPOINT_MAPS])


def convert_checkpoint_file(source: PathLike, destination: PathLike, source_format: str, *,
                            model: Optional[nn.Module] = None,
                            source_prefix: Optional[str] = None,
                            target_prefix: Optional[str] = None) -> dict[str, Any]:
    """Write a published file as an Interlace checkpoint ``{'state_dict', 'meta'}``.

    Args:
        source: the published file (``weights_only=True``).
        destination: the checkpoint to write (atomically).
        source_format: a :data:`SOURCE_FAMILIES` name (``torchvision``, ``timm``,
            ``mmdet``; the layout is detected) or a :data:`CHECKPOINT_MAPS` name (``mgca``,
            registered by ``interlace.domains.medical.models.published_weights``).
        model: the receiver (built from a config). Given, the file is loaded into it and
            its whole state dict is written (``load_from`` / ``tools/test.py`` ready) with
            loaded / missing / unexpected counts; None writes the renamed tensors alone
            (names relative to the backbone wrapper: ``resnet.*``, ``swin.*``, ``vit.*``).
        source_prefix: keep only the source keys under it (``backbone.``, ``img_backbone.``).
        target_prefix: where the backbone sits in `model` (default: found by its keys).

    Returns:
        ``dict(layout, counts, destination)``; ``counts`` holds ``loaded``, ``missing``,
        ``unexpected``, ``shape_mismatched``, ``dropped`` (with a model) or ``converted``,
        ``dropped`` (without).
    """
    state = read_state_dict(source, source_prefix)
    if source_format in CHECKPOINT_MAPS:
        layout: KeyMap | CheckpointMap = CHECKPOINT_MAPS[source_format]
        converted, dropped, input_convs = convert_checkpoint_state(state, layout)
        if target_prefix is None:
            target_prefix = ""
    elif source_format in SOURCE_FAMILIES:
        layout = KEY_MAPS[detect_layout(state, source_format)]
        converted, dropped = convert_state_dict(state, layout)
        input_convs = list(layout.input_convs)
    else:
        raise ValueError(f"unknown source format {source_format!r}; use one of "
                         f"{source_formats()}")
    if model is not None:
        report = copy_converted(model, converted, dropped=dropped, input_convs=input_convs,
                                target_prefix=target_prefix,
                                what=f"{os.fspath(source)} ({layout.name})")
        out_state, counts = model.state_dict(), report.counts()
    else:
        out_state, counts = converted, dict(converted=len(converted), dropped=len(dropped))
    meta = dict(converted_from=os.fspath(source), source_format=source_format,
                layout=layout.name, counts=counts)
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    with atomic_path(destination) as temporary:
        torch.save({"state_dict": OrderedDict(out_state), "meta": meta}, temporary)
    return dict(layout=layout.name, counts=counts, destination=os.fspath(destination))


def published_layout_converter(layout: KeyMap | CheckpointMap, parts: Optional[Sequence[str]] = None):
    """A ``Pretrained`` state converter (``init_cfg=dict(type='Pretrained', key_map=NAME)``)
    for a published layout: renames by the map, and sums RGB input convolutions where the
    receiver takes one channel. The receiver is the module ``target`` names (the backbone
    wrapper for a :class:`KeyMap`, the whole model for a :class:`CheckpointMap`)."""
    def convert(source: StateDict, target: StateDict) -> "OrderedDict[str, Tensor]":
        if isinstance(layout, CheckpointMap):
            converted, _, input_convs = convert_checkpoint_state(source, layout, parts)
        else:
            converted, _ = convert_state_dict(source, layout)
            input_convs = list(layout.input_convs)
        for key in input_convs:
            if key in converted and key in target:
                summed = _sum_input_channels(converted[key], target[key])
                if summed is not None:
                    converted[key] = summed
        return converted
    return convert


def register_published_layout(name: str, layout: KeyMap | CheckpointMap,
                              parts: Optional[Sequence[str]] = None) -> None:
    """Make a published layout usable as ``Pretrained``'s ``key_map=name``."""
    register_state_converter(name)(published_layout_converter(layout, parts))


for _name, _key_map in KEY_MAPS.items():
    register_published_layout(_name, _key_map)
