"""The camera stream of the driving detectors: one image backbone and FPN shared by all
cameras, with views folded into the batch.

A sample may lack some cameras (a dropped frame, a sensor-failure study). Those views are
marked in ``view_missing`` and never reach the backbone: their features are zeros, which
costs nothing to compute. Zeros are a fill value, not a learned "missing" token, so the
consumers (image-side attention, RoI sampling of the decoder) must also skip the views
with the same mask; zero features only keep them from contributing anything by accident.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["MultiViewImageEncoder"]

ModuleOrConfig = Union[nn.Module, dict]


def _build(component: ModuleOrConfig) -> nn.Module:
    return MODELS.build(component) if isinstance(component, dict) else component


@MODELS.register_module()
class MultiViewImageEncoder(nn.Module):
    """Backbone (+ optional neck) applied to every present view of a multi-camera sample.

    Args:
        backbone: module or config returning a tuple of maps and exposing
            ``out_channels`` and ``out_strides`` (e.g. ``MonaiSwinBackbone``).
        neck: optional module or config taking that tuple (e.g.
            ``FeaturePyramidNetwork``; it must expose ``out_channels`` and
            ``output_strides(input_strides)``).

    Example (DeepInteraction++ camera stream, strides 4 and 8)::

        dict(type='MultiViewImageEncoder',
             backbone=dict(type='MonaiSwinBackbone', pretrained='swin_tiny.pth'),
             neck=dict(type='FeaturePyramidNetwork', in_channels=[96, 192, 384, 768],
                       out_channels=256, num_outs=4, out_indices=[0, 1]))

    Attributes:
        out_channels: channels of each returned level.
        out_strides: stride of each returned level w.r.t. the input image.
    """

    def __init__(self, backbone: ModuleOrConfig, neck: Optional[ModuleOrConfig] = None) -> None:
        super().__init__()
        self.backbone = _build(backbone)
        self.neck = _build(neck) if neck is not None else None
        strides = list(self.backbone.out_strides)
        if self.neck is None:
            self.out_channels = tuple(self.backbone.out_channels)
            self.out_strides = tuple(strides)
        else:
            self.out_strides = tuple(self.neck.output_strides(strides))
            self.out_channels = (self.neck.out_channels,) * len(self.out_strides)

    def forward(self, images: Tensor, view_missing: Optional[Tensor] = None) -> tuple[Tensor, ...]:
        """Encode all cameras of a batch.

        Args:
            images: (B, V, C_in, H, W), e.g. V = 6 nuScenes cameras at 448 x 800.
            view_missing: optional (B, V) bool, True where a camera is absent. Those views
                are not encoded (the backbone sees only the present ones, folded into its
                batch) and get all-zero features.

        Returns:
            One tensor per level: (B, V, out_channels[l], ceil(H / s_l), ceil(W / s_l)) with
            s_l = out_strides[l].
        """
        if images.dim() != 5:
            raise ValueError(f"images must be (B, V, C, H, W), got shape {tuple(images.shape)}")
        batch, views = images.shape[:2]
        height, width = images.shape[-2:]
        flat = images.flatten(0, 1)  # (B * V, C, H, W): views share the backbone
        if view_missing is None:
            return tuple(f.unflatten(0, (batch, views)) for f in self._encode(flat))
        if view_missing.shape != (batch, views):
            raise ValueError(f"view_missing must be (B, V) = {(batch, views)}, got "
                             f"{tuple(view_missing.shape)}")
        present = (~view_missing.to(torch.bool)).flatten().nonzero(as_tuple=True)[0]
        if present.numel() == flat.shape[0]:
            return tuple(f.unflatten(0, (batch, views)) for f in self._encode(flat))
        if present.numel() == 0:
            # Nothing to encode: shapes follow from the strides (every stride-2 step of
            # the backbones and the FPN rounds up).
            return tuple(images.new_zeros(batch, views, channels, math.ceil(height / stride),
                                          math.ceil(width / stride))
                         for channels, stride in zip(self.out_channels, self.out_strides))
        outputs = []
        for features in self._encode(flat.index_select(0, present)):
            full = features.new_zeros((flat.shape[0], *features.shape[1:]))
            full = full.index_copy(0, present, features)  # out of place: keeps autograd simple
            outputs.append(full.unflatten(0, (batch, views)))
        return tuple(outputs)

    def _encode(self, images: Tensor) -> tuple[Tensor, ...]:
        features = self.backbone(images)
        return tuple(self.neck(features) if self.neck is not None else features)
