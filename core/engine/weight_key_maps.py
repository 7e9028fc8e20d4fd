"""Published weight layouts -> Interlace parameter names: the key maps, kept as data.

Interlace's image backbones are MONAI networks inside small wrappers (attribute ``resnet``,
``swin`` or ``vit``); published files use torchvision, Microsoft, timm, mmdet / mmpretrain
or Hugging Face names. Each layout below is one :class:`KeyMap`: regex rules applied in
order to every source key, the source keys that have no target by design (``drop``: a
classifier head, buffers a module rebuilds), value rules for tensors whose layout differs,
and an optional whole-dict step (``prepare``) for changes that touch several keys. The maps
are written relative to the wrapper (``resnet.*``), so a wrapper anywhere in a model is
found by its key prefix (:func:`.weight_conversion.find_target_prefix`, which also holds
the loader). Whole-model checkpoints are :class:`CheckpointMap` s of these maps under
prefixes (a domain registers its own in :data:`CHECKPOINT_MAPS`, e.g. the medical models'
``mgca``). ``docs/weights.md`` has the tables.

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
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Union

from torch import Tensor

from .checkpoint import CheckpointError

__all__ = ["KeyMap", "CheckpointMap", "KEY_MAPS", "CHECKPOINT_MAPS", "SOURCE_FAMILIES",
           "DERIVED_BUFFERS", "detect_layout", "swin_unfold_to_concat"]

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


@dataclass(frozen=True)
class CheckpointMap:
    """A whole model's published checkpoint: several parts, each a key map under a prefix.

    Attributes:
        name, description: as :class:`KeyMap`.
        parts: ``(source prefix, target prefix, layout)``; ``layout`` is a :data:`KEY_MAPS`
            name, a :class:`KeyMap`, or ``'auto'`` (:func:`detect_layout` on that part).
            Source keys under no part keep their names (and are reported unexpected unless
            the model has them).
    """

    name: str
    description: str
    parts: tuple[tuple[str, str, Union[str, KeyMap]], ...]


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

# Whole-model checkpoints by --from name; a domain adds its own on import (the medical
# models add 'mgca'), so core names no domain model here.
CHECKPOINT_MAPS: dict[str, CheckpointMap] = {}
