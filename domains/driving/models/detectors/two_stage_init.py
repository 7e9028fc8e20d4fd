"""DeepInteraction's two-stage initialisation: the LiDAR-only (TransFusion-L) checkpoint's
LiDAR stream and head, plus an image-backbone checkpoint, renamed to the keys of a
:class:`DeepInteractionDetector` (the published schedule starts from a LiDAR-only
checkpoint merged with an image-backbone checkpoint; docs/methods/deepinteraction.md).
``tools/model_converters/merge_checkpoints.py`` is the command line around :func:`merge_two_stage`.

Where each detector key comes from:

============================================  ===========================================
LiDAR-only checkpoint (ours / mmdet3d)        DeepInteraction key
============================================  ===========================================
lidar_encoder.* / pts_voxel_encoder.*,        lidar_encoder.* (voxel_encoder,
pts_middle_encoder.*, pts_backbone.*,         middle_encoder, backbone, neck)
pts_neck.*
bbox_head.heatmap_conv.*                      bbox_head.lidar_only_heatmap_conv.* (the
                                              LiDAR-only heatmap DI++ averages in); or
                                              bbox_head.heatmap_conv.* when the detector
                                              has no LiDAR-only heatmap and shapes match
bbox_head.decoder.input_proj.*                bev_proj.* when the detector's decoder has
                                              no input projection (both take the LiDAR
                                              BEV to the query width)
bbox_head.decoder.*                           the same key where it exists with the same
                                              shape (query init, the first LiDAR layer
                                              and its prediction heads)
============================================  ===========================================

Image checkpoint: a detector checkpoint of ours (``camera_encoder.*`` taken as is), or a
backbone in a public layout (torchvision / mmdet ResNet, official / timm / mmdet Swin,
optionally under a prefix such as ``backbone.`` or ``img_backbone.``) converted by
:mod:`interlace.domains.driving.models.camera.pretrained_weights` and placed under
``camera_encoder.backbone.``.

Everything else (the 1x1 stream projections, the interaction encoder, the camera
decoder layers, the FPN of a classification checkpoint) stays at the detector's own
initialisation, and is listed as such.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from torch import Tensor

from mmengine.logging import print_log

from interlace.core.engine.checkpoint import CheckpointError
from interlace.core.engine.pretrained_init import register_state_converter
from interlace.domains.driving.models.camera.pretrained_weights import (
    convert_resnet_state_dict, convert_swin_state_dict)

__all__ = ["MergeReport", "merge_two_stage", "lidar_only_key_map", "image_backbone_state"]

StateDict = Mapping[str, Tensor]
# mmdet3d TransFusion-L / BEVFusion module names of the LiDAR stream -> ours.
_MMDET3D_LIDAR_PREFIXES = {"pts_voxel_encoder.": "lidar_encoder.voxel_encoder.",
                           "pts_middle_encoder.": "lidar_encoder.middle_encoder.",
                           "pts_backbone.": "lidar_encoder.backbone.",
                           "pts_neck.": "lidar_encoder.neck."}
_BACKBONE_PREFIXES = ("img_backbone.", "backbone.")
_CONVERTERS: dict[str, Callable[[StateDict], tuple[Mapping[str, Tensor], list[str]]]] = {
    "MonaiResNetBackbone": convert_resnet_state_dict,
    "MonaiSwinBackbone": lambda state: convert_swin_state_dict(state, "auto"),
}


@dataclass
class MergeReport:
    """Which detector key came from where.

    Attributes:
        from_lidar: detector key -> LiDAR-only checkpoint key.
        from_image: detector key -> image checkpoint key (after conversion).
        random: detector keys left at the detector's initialisation.
        unused_lidar / unused_image: checkpoint keys that went nowhere.
        shape_mismatched: (detector key, source, checkpoint shape, detector shape).
    """

    from_lidar: dict[str, str] = field(default_factory=dict)
    from_image: dict[str, str] = field(default_factory=dict)
    random: list[str] = field(default_factory=list)
    unused_lidar: list[str] = field(default_factory=list)
    unused_image: list[str] = field(default_factory=list)
    shape_mismatched: list[tuple[str, str, tuple, tuple]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain containers (for JSON and for the checkpoint's ``meta``)."""
        return dict(from_lidar=dict(self.from_lidar), from_image=dict(self.from_image),
                    random=list(self.random), unused_lidar=list(self.unused_lidar),
                    unused_image=list(self.unused_image),
                    shape_mismatched=[[k, s, list(a), list(b)]
                                      for k, s, a, b in self.shape_mismatched])

    def summary(self) -> str:
        """A few lines: counts per source and per top-level module of what stays random."""
        groups: dict[str, int] = {}
        for key in self.random:
            top = ".".join(key.split(".")[:2])
            groups[top] = groups.get(top, 0) + 1
        lines = [f"from the LiDAR-only checkpoint: {len(self.from_lidar)} tensors",
                 f"from the image checkpoint:      {len(self.from_image)} tensors",
                 f"left at initialisation:         {len(self.random)} tensors"
                 + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(groups.items())) + ")"
                    if groups else "")]
        if self.shape_mismatched:
            shown = ", ".join(f"{k} {tuple(a)} vs {tuple(b)}"
                              for k, _, a, b in self.shape_mismatched[:3])
            lines.append(f"shape mismatches (left at initialisation): "
                         f"{len(self.shape_mismatched)} [{shown}]")
        for name, keys in (("LiDAR-only", self.unused_lidar), ("image", self.unused_image)):
            if keys:
                more = f", ... (+{len(keys) - 3})" if len(keys) > 3 else ""
                lines.append(f"unused {name} checkpoint keys: {len(keys)} "
                             f"[{', '.join(keys[:3])}{more}]")
        return "\n".join(lines)


def lidar_only_key_map(key: str, target: StateDict) -> Optional[str]:
    """The detector key a LiDAR-only checkpoint key goes to, or None (see the table)."""
    for prefix, ours in _MMDET3D_LIDAR_PREFIXES.items():
        if key.startswith(prefix):
            return ours + key[len(prefix):]
    if key.startswith("lidar_encoder."):
        return key
    if key.startswith("bbox_head.heatmap_conv."):
        rest = key[len("bbox_head.heatmap_conv."):]
        if any(k.startswith("bbox_head.lidar_only_heatmap_conv.") for k in target):
            return "bbox_head.lidar_only_heatmap_conv." + rest
        return key
    if key.startswith("bbox_head.decoder.input_proj.") and key not in target:
        return "bev_proj." + key[len("bbox_head.decoder.input_proj."):]
    if key.startswith("bbox_head.decoder."):
        return key
    return None


def image_backbone_state(state: StateDict, backbone_type: str,
                         prefix: Optional[str] = None) -> tuple["OrderedDict[str, Tensor]", list[str]]:
    """Image checkpoint -> (detector keys -> tensors, source keys dropped on conversion).

    Args:
        state: the checkpoint's tensors.
        backbone_type: the detector's camera backbone type (``MonaiResNetBackbone`` or
            ``MonaiSwinBackbone``), which picks the converter.
        prefix: keep only keys under it, stripped (default: ``img_backbone.`` or
            ``backbone.`` when every backbone key carries one of them).
    """
    if any(k.startswith("camera_encoder.") for k in state):  # a detector of ours
        return OrderedDict((k, v) for k, v in state.items()
                           if k.startswith("camera_encoder.")), []
    if prefix is None:
        prefix = next((p for p in _BACKBONE_PREFIXES if any(k.startswith(p) for k in state)), "")
    if prefix:
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
        if not state:
            raise CheckpointError(f"no image-checkpoint key starts with {prefix!r}")
    if backbone_type not in _CONVERTERS:
        raise CheckpointError(f"no weight conversion for camera backbone {backbone_type!r}; "
                              f"known: {sorted(_CONVERTERS)}")
    converted, dropped = _CONVERTERS[backbone_type](state)
    return OrderedDict(("camera_encoder.backbone." + k, v) for k, v in converted.items()), dropped


def merge_two_stage(target: StateDict, lidar_state: Optional[StateDict] = None,
                    image_state: Optional[StateDict] = None, backbone_type: str = "",
                    image_prefix: Optional[str] = None
                    ) -> tuple["OrderedDict[str, Tensor]", MergeReport]:
    """Merge the two checkpoints into the detector's key names.

    Args:
        target: the detector's ``state_dict()`` (names and shapes; values unused).
        lidar_state: tensors of the LiDAR-only checkpoint, or None.
        image_state: tensors of the image checkpoint, or None.
        backbone_type: the detector's camera backbone type (for the conversion).
        image_prefix: see :func:`image_backbone_state`.

    Returns:
        (merged state dict holding only the keys that were found, in the detector's
        order; :class:`MergeReport`). The image checkpoint wins where both give a key.
    """
    report = MergeReport()
    merged: OrderedDict[str, Tensor] = OrderedDict()

    def place(key: Optional[str], value: Tensor, source_key: str, source: str) -> bool:
        if key is None or key not in target:
            return False
        if tuple(value.shape) != tuple(target[key].shape):
            report.shape_mismatched.append((key, source, tuple(value.shape),
                                            tuple(target[key].shape)))
            return True  # matched by name, so not "unused"
        merged[key] = value
        (report.from_lidar if source == "lidar" else report.from_image)[key] = source_key
        return True

    for key, value in (lidar_state or {}).items():
        if not place(lidar_only_key_map(key, target), value, key, "lidar"):
            report.unused_lidar.append(key)
    if image_state is not None:
        converted, _ = image_backbone_state(image_state, backbone_type, image_prefix)
        for key, value in converted.items():
            report.from_lidar.pop(key, None)
            if not place(key, value, key, "image"):
                report.unused_image.append(key)
    ordered = OrderedDict((k, merged[k]) for k in target if k in merged)
    report.random = [k for k in target if k not in ordered
                     and not k.endswith("num_batches_tracked")]
    return ordered, report


@register_state_converter("lidar_only_to_deepinteraction")
def lidar_only_to_deepinteraction(source: StateDict, target: StateDict) -> "OrderedDict[str, Tensor]":
    """``init_cfg=dict(type='Pretrained', key_map='lidar_only_to_deepinteraction')``: the
    LiDAR-only checkpoint's tensors under the DeepInteraction detector's names (the table
    above); the image backbone keeps its own initialisation."""
    merged, report = merge_two_stage(target, lidar_state=source)
    print_log(f"two-stage start: {report.summary()}", logger="current")
    return merged
