"""Pretrained image-backbone weights from local files, renamed to MONAI's parameter names.

Nothing downloads: pass the path of a file you have (``.pth``/``.pt``, read with
``torch.load(weights_only=True)``; a whole checkpoint's ``state_dict``/``model`` entry is
found automatically, and ``source_prefix='img_backbone.'`` takes the image backbone out of
a DeepInteraction / mmdet3d detector checkpoint).

ResNet (:class:`MonaiResNetBackbone`, target ``resnet.*``)
    MONAI's 2D ``ResNet`` uses torchvision's names, so the mapping is the identity under
    the ``resnet.`` prefix: ``conv1.weight`` -> ``resnet.conv1.weight``,
    ``layer1.0.downsample.0.weight`` -> ``resnet.layer1.0.downsample.0.weight``. ``fc.*``
    (the ImageNet classifier) is dropped. mmdet's pytorch-style ResNet has the same names.
    Old torchvision files lack ``*.num_batches_tracked``; those are not reported missing.
    Caffe-style ResNets (stride on the 1x1 conv, e.g. Detectron's) have the same names but
    different weights meaning: do not load them here.

Swin (:class:`MonaiSwinBackbone`, target ``swin.*`` = MONAI ``SwinTransformer`` and
``output_norms.*``). ``i`` is the stage (0-3), ``j`` the block:

===============================================  ==========================================
official (Microsoft; timm < 0.9)                 ours
===============================================  ==========================================
patch_embed.proj.{weight,bias}                   swin.patch_embed.proj.*
patch_embed.norm.{weight,bias}                   swin.patch_embed.norm.*
layers.i.blocks.j.norm1.*                        swin.layers{i+1}.0.blocks.j.norm1.*
layers.i.blocks.j.attn.qkv.*                     swin.layers{i+1}.0.blocks.j.attn.qkv.*
layers.i.blocks.j.attn.proj.*                    swin.layers{i+1}.0.blocks.j.attn.proj.*
layers.i.blocks.j.attn.relative_position_bias_table   ...attn.relative_position_bias_table
layers.i.blocks.j.norm2.*                        swin.layers{i+1}.0.blocks.j.norm2.*
layers.i.blocks.j.mlp.fc1.* / mlp.fc2.*          swin.layers{i+1}.0.blocks.j.mlp.linear1.* / linear2.*
layers.i.downsample.{reduction,norm}.* (i < 3)   swin.layers{i+1}.0.downsample.*
norm.* (classifier's final norm, on stage 3)     output_norms.3.*
norm{k}.* (Swin detection checkpoints)           output_norms.{k}.*
head.*                                           dropped
layers.i.blocks.j.attn.relative_position_index   skipped (a buffer MONAI computes itself)
layers.i.blocks.j.attn_mask                      skipped (a buffer, rebuilt per input size)
===============================================  ==========================================

Other layouts of the same weights are first brought to the official one:

- timm >= 0.9 (detected by ``head.fc.*`` or by ``layers.3.downsample``): the patch
  merging sits at the start of the *next* stage, ``layers.{i+1}.downsample`` ->
  ``layers.i.downsample``; ``head.fc.*`` is dropped. Channel order is unchanged.
- mmdet / mmseg (detected by ``stages.`` or ``patch_embed.projection``): ``stages`` ->
  ``layers``, ``patch_embed.projection`` -> ``patch_embed.proj``, ``attn.w_msa.`` ->
  ``attn.``, ``ffn.layers.0.0`` -> ``mlp.fc1``, ``ffn.layers.1`` -> ``mlp.fc2``; its patch
  merging gathers the 2x2 neighbours with ``nn.Unfold`` (channel = c * 4 + 2 * dy + dx)
  instead of concatenating them (channel = (2 * dx + dy) * C + c), so ``downsample.reduction``
  columns and ``downsample.norm`` entries are permuted back.

Where the mapped keys and the model disagree, :class:`LoadReport` lists the missing,
unexpected and shape-mismatched keys (an ImageNet classification file has no
``output_norms.0-2``: those stay at their initial identity and are reported missing).
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Callable, Mapping, Optional

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from interlace.core.engine.checkpoint import (CheckpointError, LoadReport, PathLike,
                                              extract_state_dict, load_checkpoint_file)

__all__ = ["SWIN_FORMATS", "convert_resnet_state_dict", "convert_swin_state_dict",
           "detect_swin_format", "load_converted_weights", "swin_unfold_to_concat"]

SWIN_FORMATS = ("official", "timm", "mmdet")
StateDict = Mapping[str, Tensor]

# Rules from official Swin names to ours, applied in order with re.sub.
_SWIN_TO_MONAI = [
    (r"^layers\.(\d+)\.", lambda m: f"swin.layers{int(m.group(1)) + 1}.0."),
    (r"\.mlp\.fc1\.", ".mlp.linear1."),
    (r"\.mlp\.fc2\.", ".mlp.linear2."),
    (r"^patch_embed\.", "swin.patch_embed."),
    (r"^norm\.", "output_norms.3."),
    (r"^norm(\d)\.", r"output_norms.\1."),
]
# Buffers a module computes or counts itself, never reported missing: BatchNorm's step
# counter (absent from old torchvision files) and Swin's relative position index.
_DERIVED_BUFFERS = ("num_batches_tracked", "relative_position_index")
_SWIN_SKIPPED = re.compile(r"(relative_position_index|attn_mask)$")
_MMDET_TO_OFFICIAL = [
    (r"^stages\.", "layers."), (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"\.attn\.w_msa\.", ".attn."), (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
]


def convert_resnet_state_dict(state: StateDict) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """torchvision / mmdet ResNet names -> :class:`MonaiResNetBackbone` names.

    Returns:
        (converted state dict, dropped source keys).
    """
    converted: OrderedDict[str, Tensor] = OrderedDict()
    dropped = []
    for key, value in state.items():
        if key.startswith("fc."):
            dropped.append(key)
        else:
            converted["resnet." + key] = value
    return converted, dropped


def detect_swin_format(state: StateDict) -> str:
    """Which layout of Swin weights `state` is in: one of :data:`SWIN_FORMATS`."""
    keys = list(state)
    if any(k.startswith("stages.") or k.startswith("patch_embed.projection.") for k in keys):
        return "mmdet"
    if any(k.startswith("head.fc.") for k in keys):
        return "timm"
    downsampled = {int(m.group(1)) for k in keys if (m := re.match(r"layers\.(\d+)\.downsample\.", k))}
    # Official: merges after stages 0..2; timm >= 0.9: before stages 1..3.
    if downsampled and 0 not in downsampled:
        return "timm"
    return "official"


def swin_unfold_to_concat(value: Tensor) -> Tensor:
    """Reorder a patch-merging ``reduction`` weight (out, 4C) or ``norm`` vector (4C) from
    mmdet's ``nn.Unfold`` channel order (c * 4 + 2 * dy + dx) to the official concatenation
    order ((2 * dx + dy) * C + c)."""
    position_of_offset = [0, 2, 1, 3]  # unfold slot (2*dy+dx) -> concat slot (2*dx+dy); self-inverse
    if value.dim() == 2:
        out_channels, in_channels = value.shape
        grouped = value.reshape(out_channels, in_channels // 4, 4)[:, :, position_of_offset]
        return grouped.transpose(1, 2).reshape(out_channels, in_channels)
    grouped = value.reshape(value.shape[0] // 4, 4)[:, position_of_offset]
    return grouped.transpose(0, 1).reshape(value.shape[0])


def _to_official_swin(state: StateDict, source_format: str) -> "OrderedDict[str, Tensor]":
    official: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in state.items():
        if source_format == "timm":
            key = re.sub(r"^layers\.(\d+)\.downsample\.",
                         lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key)
        elif source_format == "mmdet":
            for pattern, replacement in _MMDET_TO_OFFICIAL:
                key = re.sub(pattern, replacement, key)
            if re.match(r"layers\.\d+\.downsample\.(reduction|norm)\.", key):
                value = swin_unfold_to_concat(value)
        official[key] = value
    return official


def convert_swin_state_dict(state: StateDict, source_format: str = "auto"
                            ) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """Official / timm / mmdet Swin names -> :class:`MonaiSwinBackbone` names (table in
    the module docstring).

    Args:
        state: the backbone's tensors (any ``backbone.`` prefix already stripped).
        source_format: ``'auto'`` or one of :data:`SWIN_FORMATS`.

    Returns:
        (converted state dict, dropped or skipped source keys).
    """
    if source_format == "auto":
        source_format = detect_swin_format(state)
    if source_format not in SWIN_FORMATS:
        raise ValueError(f"unknown Swin weight format {source_format!r}; use 'auto' or one of {SWIN_FORMATS}")
    converted: OrderedDict[str, Tensor] = OrderedDict()
    dropped = []
    for key, value in _to_official_swin(state, source_format).items():
        if key.startswith("head.") or _SWIN_SKIPPED.search(key):
            dropped.append(key)
            continue
        new_key = key
        for pattern, replacement in _SWIN_TO_MONAI:
            new_key = re.sub(pattern, replacement, new_key)
        if new_key in converted:
            raise CheckpointError(f"two Swin weights map to {new_key!r} (last: {key!r})")
        converted[new_key] = value
    return converted, dropped


def load_converted_weights(module: nn.Module, path: PathLike,
                           convert: Callable[[StateDict], tuple[Mapping[str, Tensor], list[str]]],
                           source_prefix: Optional[str] = None, strict: bool = False) -> LoadReport:
    """Read `path`, rename its keys with `convert`, copy matching tensors into `module`.

    Args:
        module: the receiver (its ``state_dict()`` names are the targets).
        path: local weights file.
        convert: state dict -> (renamed state dict, dropped keys), e.g.
            :func:`convert_resnet_state_dict`.
        source_prefix: keep only keys starting with it, stripped (``'img_backbone.'``).
        strict: raise :class:`CheckpointError` before copying anything unless every
            parameter and buffer of `module` gets a value of the right shape and every
            kept key is used (``num_batches_tracked`` and ``relative_position_index``
            buffers may be absent: the module makes its own).

    Returns:
        :class:`LoadReport`; also logged in one line.
    """
    path = os.fspath(path)
    state = extract_state_dict(load_checkpoint_file(path))
    if source_prefix:
        state = OrderedDict((k[len(source_prefix):], v) for k, v in state.items()
                            if k.startswith(source_prefix))
        if not state:
            raise CheckpointError(f"No key of {path} starts with source_prefix '{source_prefix}'.")
    converted, dropped = convert(state)
    target = module.state_dict()
    report = LoadReport()
    to_load: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in converted.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.shape_mismatched.append((key, tuple(value.shape), tuple(target[key].shape)))
        else:
            to_load[key] = value
            report.loaded.append(key)
    mismatched = {k for k, _, _ in report.shape_mismatched}
    report.missing = [k for k in target if k not in to_load and k not in mismatched
                      and not k.endswith(_DERIVED_BUFFERS)]
    if strict and not report.complete:
        raise CheckpointError(f"Weights in {path} do not match {type(module).__name__} "
                              f"(strict): {report.summary()}")
    with torch.no_grad():
        module.load_state_dict(to_load, strict=False)
    note = f"; dropped {len(dropped)} (classifier head, position-index buffers)" if dropped else ""
    print_log(f"Loaded weights from {path} into {type(module).__name__}: {report.summary()}{note}",
              logger="current")
    return report
