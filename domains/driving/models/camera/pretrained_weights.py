"""Pretrained image-backbone weights from local files, renamed to MONAI's parameter names.

Nothing downloads: pass the path of a file you have (``.pth``/``.pt``, read with
``torch.load(weights_only=True)``; a whole checkpoint's ``state_dict``/``model`` entry is
found automatically, and ``source_prefix='img_backbone.'`` takes the image backbone out of
a DeepInteraction / mmdet3d detector checkpoint).

The key maps themselves (torchvision / mmdet ResNet -> ``resnet.*``; official, timm and
mmdet / mmpretrain Swin -> ``swin.*`` and ``output_norms.*``) are data in
:mod:`interlace.core.engine.weight_conversion`, shared with the medical encoders and
``tools/analysis_tools/convert_checkpoint.py``; ``docs/weights.md`` has the tables. This
module keeps the backbones' entry points:

- :func:`convert_resnet_state_dict`: ``fc.*`` dropped, everything else under ``resnet.``
  (MONAI's 2D ``ResNet`` uses torchvision's names; mmdet's pytorch-style ResNet too).
  Caffe-style ResNets (stride on the 1x1 conv) share the names but not the meaning: do not
  load them here.
- :func:`convert_swin_state_dict`: official / timm / mmdet Swin, detected by
  :func:`detect_swin_format` (``stages.`` or ``patch_embed.projection`` -> mmdet;
  ``head.fc``, ``layers_i`` or merges opening stages 1-3 -> timm >= 0.9; else official).
  mmdet's patch merging gathers the 2x2 neighbours with ``nn.Unfold``, so its
  ``downsample.reduction`` columns and ``downsample.norm`` entries are permuted back
  (:func:`swin_unfold_to_concat`).

Where the mapped keys and the model disagree, :class:`LoadReport` lists the missing,
unexpected and shape-mismatched keys (an ImageNet classification file has no
``output_norms.0-2``: those stay at their initial identity and are reported missing).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable, Mapping, Optional

from torch import Tensor, nn

from interlace.core.engine.checkpoint import CheckpointError, LoadReport, PathLike
from interlace.core.engine.weight_conversion import (convert_state_dict, copy_converted,
                                                     detect_layout, read_state_dict,
                                                     swin_unfold_to_concat)

__all__ = ["SWIN_FORMATS", "convert_resnet_state_dict", "convert_swin_state_dict",
           "detect_swin_format", "load_converted_weights", "swin_unfold_to_concat"]

SWIN_FORMATS = ("official", "timm", "mmdet")
StateDict = Mapping[str, Tensor]


def convert_resnet_state_dict(state: StateDict) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """torchvision / mmdet ResNet names -> :class:`MonaiResNetBackbone` names.

    Returns:
        (converted state dict, dropped source keys).
    """
    return convert_state_dict(state, "torchvision_resnet")


def detect_swin_format(state: StateDict) -> str:
    """Which layout of Swin weights `state` is in: one of :data:`SWIN_FORMATS`."""
    layout = detect_layout(state)
    if not layout.endswith("_swin"):
        raise CheckpointError(f"the weights are {layout!r}, not Swin")
    return layout[: -len("_swin")]


def convert_swin_state_dict(state: StateDict, source_format: str = "auto"
                            ) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """Official / timm / mmdet Swin names -> :class:`MonaiSwinBackbone` names.

    Args:
        state: the backbone's tensors (any ``backbone.`` prefix already stripped).
        source_format: ``'auto'`` or one of :data:`SWIN_FORMATS`.

    Returns:
        (converted state dict, dropped or skipped source keys).
    """
    if source_format == "auto":
        source_format = detect_swin_format(state)
    if source_format not in SWIN_FORMATS:
        raise ValueError(f"unknown Swin weight format {source_format!r}; use 'auto' or one of "
                         f"{SWIN_FORMATS}")
    return convert_state_dict(state, f"{source_format}_swin")


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
    state = read_state_dict(path, source_prefix)
    converted, dropped = convert(state)
    return copy_converted(module, converted, dropped=dropped, target_prefix="", strict=strict,
                          what=os.fspath(path))
