"""Published weight files -> Interlace parameter names: the key maps, kept as data.

Interlace's image backbones are MONAI networks inside small wrappers (attribute ``resnet``,
``swin`` or ``vit``); published files use torchvision, Microsoft, timm, mmdet / mmpretrain
or Hugging Face names. Each layout below is one :class:`KeyMap`: regex rules applied in
order to every source key, the source keys that have no target by design (``drop``: a
classifier head, buffers a module rebuilds), value rules for tensors whose layout differs,
and an optional whole-dict step (``prepare``) for changes that touch several keys. The maps
are written relative to the wrapper (``resnet.*``), so a wrapper anywhere in a model is
found by its key prefix (:func:`find_target_prefix`). ``docs/weights.md`` has the tables.

===================  ==========================================  ===========================
layout               source keys (published)                     Interlace keys
===================  ==========================================  ===========================
torchvision_resnet   conv1.weight, bn1.*, layer1.0.conv1.weight,   resnet.<same>; fc.* dropped
                     layer1.0.downsample.0.weight, fc.*
mmdet_resnet         (after ``backbone.``) the torchvision names   resnet.<same>; head.* dropped
                     (mmdet, mmpretrain ``ResNet``)
official_swin        patch_embed.proj.*, layers.i.blocks.j.*,      swin.patch_embed.*,
                     layers.i.downsample.* (i < 3), norm.*,        swin.layers{i+1}.0.blocks.j.*,
                     mlp.fc1 / mlp.fc2, head.*                     mlp.linear1 / linear2,
                                                                   output_norms.3 (``norm``),
                                                                   output_norms.k (``normk``)
timm_swin            timm >= 0.9: the merge opens stage i+1        as official_swin
                     (``layers.{i+1}.downsample``), ``head.fc``;
                     ``layers_i`` in timm's features_only models
mmdet_swin           (after ``backbone.``) stages.i.blocks.j.      as official_swin; merge
                     attn.w_msa.*, ffn.layers.0.0 / ffn.layers.1,  weights reordered from
                     patch_embed.projection, stages.i.downsample   nn.Unfold's channel order
timm_vit             cls_token, pos_embed (1, 1+N, D),             vit.cls_token (+ pos_embed's
                     patch_embed.proj.*, blocks.j.attn.qkv /       CLS row), vit.patch_embedding.
                     attn.proj, mlp.fc1 / fc2, norm1 / norm2,      position_embeddings (patch
                     norm.*, head.*                                rows), vit.patch_embedding.
                                                                   patch_embeddings.*, blocks.j.
                                                                   attn.out_proj, mlp.linear1/2
hf_bert              embeddings.*, encoder.layer.k.* (``bert.``    model.<same>; cls.*, pooler.*
                     in BertForMaskedLM / CXR-BERT files)          and position_ids dropped
===================  ==========================================  ===========================

Why the ViT map moves one row of ``pos_embed``: timm adds a position embedding to the CLS
token too, MONAI's ViT adds one to the patches only, so the CLS row is folded into
``cls_token`` (identical sums in the first block). Buffers a module computes itself
(``num_batches_tracked`` of old torchvision files, Swin's ``relative_position_index``) are
never reported missing. A first convolution given RGB weights for a one-channel input
(chest X-rays) gets the sum over the three input channels (``input_convs``): the same
response to a grey image repeated into RGB.

What a load did is a :class:`WeightLoadReport`: loaded, missing (model keys without a
value), unexpected (source keys whose mapped name the model lacks), shape-mismatched
(skipped), dropped (by the map), channel-summed.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from .checkpoint import (CheckpointError, LoadReport, PathLike, extract_state_dict,
                         load_checkpoint_file)

__all__ = ["KeyMap", "KEY_MAPS", "WeightLoadReport", "convert_state_dict", "detect_layout",
           "find_target_prefix", "load_published_weights", "read_state_dict",
           "swin_unfold_to_concat", "strip_prefix", "SOURCE_FAMILIES"]

StateDict = Mapping[str, Tensor]
Replacement = Union[str, Callable[[re.Match], str]]
# Buffers a module computes or counts itself, never reported missing.
DERIVED_BUFFERS = ("num_batches_tracked", "relative_position_index")


@dataclass(frozen=True)
class KeyMap:
    """One published layout -> Interlace names (relative to the backbone wrapper).

    Attributes:
        name: the layout's name in :data:`KEY_MAPS`.
        description: where files of this layout come from.
        rules: ``(regex, replacement)`` applied with :func:`re.sub`, in order.
        drop: regexes of source keys (before the rules) with no target by design.
        value_rules: ``(regex on the source key, function)`` applied to matching tensors.
        prepare: a whole-state-dict step run first (keys touching each other).
        input_convs: target keys of first convolutions that may take RGB weights for a
            one-channel input (summed over the input channels).
    """

    name: str
    description: str
    rules: tuple[tuple[str, Replacement], ...] = ()
    drop: tuple[str, ...] = ()
    value_rules: tuple[tuple[str, Callable[[Tensor], Tensor]], ...] = ()
    prepare: Optional[Callable[[StateDict], "OrderedDict[str, Tensor]"]] = None
    input_convs: tuple[str, ...] = ()


# --- layout-specific steps ------------------------------------------------------------------

def swin_unfold_to_concat(value: Tensor) -> Tensor:
    """Reorder a patch-merging ``reduction`` weight (out, 4C) or ``norm`` vector (4C) from
    mmdet's ``nn.Unfold`` channel order (c * 4 + 2 * dy + dx) to the official concatenation
    order ((2 * dx + dy) * C + c)."""
    position_of_offset = [0, 2, 1, 3]  # unfold slot (2*dy+dx) -> concat slot (2*dx+dy)
    if value.dim() == 2:
        out_channels, in_channels = value.shape
        grouped = value.reshape(out_channels, in_channels // 4, 4)[:, :, position_of_offset]
        return grouped.transpose(1, 2).reshape(out_channels, in_channels)
    grouped = value.reshape(value.shape[0] // 4, 4)[:, position_of_offset]
    return grouped.transpose(0, 1).reshape(value.shape[0])


def _timm_swin_to_official(state: StateDict) -> "OrderedDict[str, Tensor]":
    """timm >= 0.9: ``layers_i`` (features_only) -> ``layers.i``; the patch merging that
    opens stage i+1 closes stage i, as in the official layout."""
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in state.items():
        key = re.sub(r"^layers_(\d+)\.", r"layers.\1.", key)
        key = re.sub(r"^layers\.(\d+)\.downsample\.",
                     lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key)
        out[key] = value
    return out


def _timm_vit_split_pos_embed(state: StateDict) -> "OrderedDict[str, Tensor]":
    """Fold ``pos_embed``'s CLS row into ``cls_token`` and keep the patch rows."""
    out = OrderedDict(state)
    pos = state.get("pos_embed")
    if pos is not None and "cls_token" in state:
        out["cls_token"] = state["cls_token"] + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
    return out


_SWIN_TO_MONAI: tuple[tuple[str, Replacement], ...] = (
    (r"^layers\.(\d+)\.", lambda m: f"swin.layers{int(m.group(1)) + 1}.0."),
    (r"\.mlp\.fc1\.", ".mlp.linear1."),
    (r"\.mlp\.fc2\.", ".mlp.linear2."),
    (r"^patch_embed\.", "swin.patch_embed."),
    (r"^norm\.", "output_norms.3."),
    (r"^norm(\d)\.", r"output_norms.\1."),
)
_SWIN_DROP = (r"^head\.", r"relative_position_index$", r"attn_mask$")
_MMDET_SWIN_TO_OFFICIAL: tuple[tuple[str, Replacement], ...] = (
    (r"^stages\.", "layers."), (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"\.attn\.w_msa\.", ".attn."), (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
)
_RESNET = (r"^", "resnet.")

KEY_MAPS: dict[str, KeyMap] = {m.name: m for m in (
    KeyMap("torchvision_resnet", "torchvision's resnet18/34/50/101 ImageNet files "
           "(e.g. resnet50-0676ba61.pth); MONAI's ResNet uses the same names",
           rules=(_RESNET,), drop=(r"^fc\.",), input_convs=("resnet.conv1.weight",)),
    KeyMap("mmdet_resnet", "mmdet / mmpretrain ResNet (pytorch style) after the "
           "'backbone.' prefix: torchvision's names",
           rules=(_RESNET,), drop=(r"^fc\.", r"^head\."), input_convs=("resnet.conv1.weight",)),
    KeyMap("official_swin", "Microsoft's Swin files ('model' wrapper, e.g. "
           "swin_tiny_patch4_window7_224.pth) and timm < 0.9",
           rules=_SWIN_TO_MONAI, drop=_SWIN_DROP),
    KeyMap("timm_swin", "timm >= 0.9 Swin (swin_tiny_patch4_window7_224.ms_in1k), "
           "also features_only models (layers_i)",
           rules=_SWIN_TO_MONAI, drop=_SWIN_DROP + (r"^head\.fc\.",),
           prepare=_timm_swin_to_official),
    KeyMap("mmdet_swin", "mmdet / mmseg / mmpretrain SwinTransformer after the 'backbone.' "
           "prefix", rules=_MMDET_SWIN_TO_OFFICIAL + _SWIN_TO_MONAI, drop=_SWIN_DROP,
           value_rules=((r"^stages\.\d+\.downsample\.(reduction|norm)\.",
                         swin_unfold_to_concat),)),
    KeyMap("timm_vit", "timm / DeiT / BLIP ViT (vit_base_patch16_224; MGCA's ViT-B/16)",
           rules=((r"^cls_token$", "vit.cls_token"),
                  (r"^pos_embed$", "vit.patch_embedding.position_embeddings"),
                  (r"^patch_embed\.proj\.", "vit.patch_embedding.patch_embeddings."),
                  (r"\.attn\.proj\.", ".attn.out_proj."),
                  (r"\.mlp\.fc1\.", ".mlp.linear1."), (r"\.mlp\.fc2\.", ".mlp.linear2."),
                  (r"^blocks\.", "vit.blocks."), (r"^norm\.", "vit.norm.")),
           drop=(r"^head\.", r"^head_dist\.", r"^dist_token$"),
           prepare=_timm_vit_split_pos_embed,
           input_convs=("vit.patch_embedding.patch_embeddings.weight",)),
    KeyMap("hf_bert", "Hugging Face BertModel / BertForMaskedLM weights (Bio_ClinicalBERT, "
           "CXR-BERT) into ReportTextEncoder (attribute 'model')",
           rules=((r"^bert\.", ""), (r"^", "model.")),
           drop=(r"^cls\.", r"^(bert\.)?pooler\.", r"position_ids$")),
)}

# --from of the convert tool -> the layouts of that family, told apart by detect_layout.
SOURCE_FAMILIES: dict[str, tuple[str, ...]] = {
    "torchvision": ("torchvision_resnet",),
    "timm": ("timm_swin", "official_swin", "timm_vit"),
    "mmdet": ("mmdet_resnet", "mmdet_swin"),
}


def detect_layout(state: StateDict, family: Optional[str] = None) -> str:
    """The :data:`KEY_MAPS` layout of a state dict (any wrapper prefix already stripped).

    Args:
        state: the backbone's tensors.
        family: a key of :data:`SOURCE_FAMILIES` to choose within; None = any.

    Raises:
        CheckpointError: no layout fits; the message shows the first keys.
    """
    keys = list(state)
    has = lambda pattern: any(re.search(pattern, k) for k in keys)  # noqa: E731
    if has(r"^stages\.\d+\.blocks\.") or has(r"^patch_embed\.projection\."):
        layout = "mmdet_swin"
    elif has(r"^layers[._]\d+\.blocks\."):
        merged = {int(m.group(1)) for k in keys
                  if (m := re.match(r"layers[._](\d+)\.downsample\.", k))}
        timm = has(r"^head\.fc\.") or has(r"^layers_\d") or (merged and 0 not in merged)
        layout = "timm_swin" if timm else "official_swin"
    elif has(r"^blocks\.\d+\.attn\.qkv\.") and has(r"^cls_token$"):
        layout = "timm_vit"
    elif has(r"^layer1\.0\.conv1\.weight$"):
        layout = "mmdet_resnet" if family == "mmdet" else "torchvision_resnet"
    elif has(r"^(bert\.)?encoder\.layer\.\d+\."):
        layout = "hf_bert"
    else:
        raise CheckpointError(f"no known weight layout fits the keys (first: "
                              f"{', '.join(keys[:5])}); known: {sorted(KEY_MAPS)}")
    if family is not None and layout not in SOURCE_FAMILIES.get(family, ()):
        raise CheckpointError(f"the keys look like {layout!r}, not a {family} file "
                              f"({', '.join(keys[:3])}, ...)")
    return layout


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
                           layout: KeyMap | str = "auto", *, source_prefix: Optional[str] = None,
                           target_prefix: Optional[str] = None, family: Optional[str] = None,
                           strict: bool = False, log: bool = True) -> WeightLoadReport:
    """Copy a published file's tensors into `module` under Interlace's names.

    Args:
        module: the receiver: a backbone wrapper, or any model that holds one (the wrapper
            is found by :func:`find_target_prefix` unless `target_prefix` is given).
        source: a weights file (``.pth`` / ``.pt`` / ``.ckpt``, read with
            ``weights_only=True``) or a state dict.
        layout: a :data:`KEY_MAPS` name or :class:`KeyMap`; ``'auto'`` detects it.
        source_prefix: keep only keys under it, stripped (``'backbone.'``, ``'img_backbone.'``).
        target_prefix: where the wrapper sits in `module` (``''`` = `module` itself).
        family: with ``layout='auto'``, the source family (:data:`SOURCE_FAMILIES`).
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
    key_map = KEY_MAPS[detect_layout(state, family)] if layout == "auto" else (
        KEY_MAPS[layout] if isinstance(layout, str) else layout)
    converted, dropped = convert_state_dict(state, key_map)
    target = module.state_dict()
    if target_prefix is None:
        target_prefix = find_target_prefix(list(target), list(converted))
    report = WeightLoadReport(dropped=dropped)
    to_load: OrderedDict[str, Tensor] = OrderedDict()
    input_convs = {target_prefix + k for k in key_map.input_convs}
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
        raise CheckpointError(f"Weights in {what} ({key_map.name}) do not match "
                              f"{type(module).__name__} (strict): {report.summary()}")
    with torch.no_grad():
        module.load_state_dict(to_load, strict=False)
    if log:
        notes = f"; dropped {len(dropped)} (classifier head, derived buffers)" if dropped else ""
        if report.channel_summed:
            notes += f"; RGB summed to one channel: {', '.join(report.channel_summed)}"
        print_log(f"Loaded {what} ({key_map.name}) into {type(module).__name__}"
                  f"{' under ' + target_prefix if target_prefix else ''}: "
                  f"{report.summary()}{notes}", logger="current")
    return report


def describe_key_maps() -> dict[str, Any]:
    """Every layout's description and rules, for documentation and ``--help``."""
    return {name: dict(description=m.description, rules=[p for p, _ in m.rules],
                       drop=list(m.drop)) for name, m in KEY_MAPS.items()}
