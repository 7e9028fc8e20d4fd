"""Downstream heads on the fused map of the SkySense encoder."""
from __future__ import annotations

import math
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["SegmentationHead", "SceneClassificationHead"]


@MODELS.register_module()
class SegmentationHead(nn.Module):
    """Per-cell classifier, upsampled to the input resolution.

    A 3x3 conv block mixes neighbouring cells, a 1x1 conv gives class logits on the
    grid, and bilinear interpolation brings them to the output size (as UPerNet-style
    heads do for their last stage; the fused grid is usually 2-4x coarser than 10 m).

    Args:
        in_channels: channels of the fused map (2 * D with geo-context prototypes).
        num_classes: K.
        hidden_dims: channels of the conv block.
        dropout: dropout before the classifier.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_dims: int = 64,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, hidden_dims, 3, padding=1, bias=False),
            nn.GroupNorm(math.gcd(hidden_dims, 8), hidden_dims), nn.GELU(), nn.Dropout2d(dropout))
        self.classifier = nn.Conv2d(hidden_dims, num_classes, 1)

    def forward(self, features: Tensor, output_size: Sequence[int]) -> Tensor:
        """features: (B, C, h, w) -> logits (B, K, H, W) with (H, W) = `output_size`."""
        logits = self.classifier(self.block(features))
        if tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=tuple(output_size), mode="bilinear",
                                   align_corners=False)
        return logits


@MODELS.register_module()
class SceneClassificationHead(nn.Module):
    """Global average pooling, LayerNorm and a linear classifier.

    Args:
        in_channels: channels of the fused map.
        num_classes: K.
        dropout: dropout before the classifier.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.norm = nn.LayerNorm(in_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        """features: (B, C, h, w) -> logits (B, K)."""
        return self.classifier(self.dropout(self.norm(features.mean(dim=(2, 3)))))
