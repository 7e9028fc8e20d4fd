"""TransFusion-style query initialisation from a class heatmap on stream A's map.

The predictive interaction decoder starts from *input-dependent* queries instead of
learned constants: each query sits on a local maximum of a class heatmap (the most
likely object centres), carries the map feature found there, and knows which class
proposed it through a class embedding. This gives the decoder good first positions, so
its layers only refine them (TransFusion; DeepInteraction keeps this scheme).

Selection, per sample:
1. ``sigmoid`` of the heatmap logits (B, K, H, W);
2. local-maximum suppression per class: a cell survives when it equals the max of its
   ``k x k`` neighbourhood in its own class channel (3 x 3 by default; small classes such
   as pedestrians or traffic cones use 1 x 1, i.e. no suppression, because their centres
   can be one cell apart);
3. top ``num_queries`` scores over all classes and positions jointly.

Coordinates follow :mod:`interlace.core.interaction.streams`: cell (i, j) of an H x W map
has the normalised centre ((j + 0.5) / W, (i + 0.5) / H).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["HeatmapQueryInitializer", "InitialQueries", "local_maximum_mask"]

# Focal-loss prior: sigmoid(-2.19) ~= 0.1, so an untrained heatmap does not flood the
# top-K with confident noise and the focal loss starts from a sensible value.
HEATMAP_PRIOR_BIAS = -2.19


@dataclass
class InitialQueries:
    """Queries picked from the heatmap.

    Attributes:
        features: (B, Q, C) map feature at the peak + class embedding.
        positions: (B, Q, 2) normalised (x, y) cell centres of the peaks.
        class_ids: (B, Q) long, class channel of each peak.
        scores: (B, Q) sigmoid heatmap score of each peak (differentiable w.r.t. the
            heatmap logits; TransFusion multiplies it into the final scores).
        heatmap: (B, K, H, W) the heatmap logits used (built or given), for the dense
            heatmap loss.
        flat_index: (B, Q) long, ``i * W + j`` of each peak on the map.
    """

    features: Tensor
    positions: Tensor
    class_ids: Tensor
    scores: Tensor
    heatmap: Tensor
    flat_index: Tensor


def local_maximum_mask(scores: Tensor, nms_kernel_size: int = 3,
                       class_kernel_sizes: Optional[dict[int, int]] = None) -> Tensor:
    """(B, K, H, W) bool: True where a score is the maximum of its k x k neighbourhood
    within its class channel, k per class (``class_kernel_sizes`` overrides the default
    ``nms_kernel_size`` for the classes it names; 1 keeps every cell).

    Plateaus (equal neighbours) keep all their cells: ties are rare on real heatmaps and
    the top-K picks among them.
    """
    num_classes = scores.shape[1]
    kernels = [int(nms_kernel_size)] * num_classes
    for cls, size in (class_kernel_sizes or {}).items():
        cls = int(cls)
        if not 0 <= cls < num_classes:
            raise ValueError(f"class_kernel_sizes names class {cls}, but there are "
                             f"{num_classes} classes")
        kernels[cls] = int(size)
    keep = torch.ones_like(scores, dtype=torch.bool)
    # One max-pool per distinct kernel size, over the classes that use it.
    for size in sorted(set(kernels)):
        if size < 1 or size % 2 == 0:
            raise ValueError(f"local-maximum kernel sizes must be odd and >= 1, got {size}")
        if size == 1:
            continue
        classes = [k for k, s in enumerate(kernels) if s == size]
        sub = scores[:, classes]
        # max_pool2d pads with -inf, so border cells compare against their real
        # neighbours only and are never suppressed by padding.
        pooled = F.max_pool2d(sub, kernel_size=size, stride=1, padding=size // 2)
        keep[:, classes] = sub >= pooled
    return keep


@MODELS.register_module()
class HeatmapQueryInitializer(nn.Module):
    """Pick ``num_queries`` queries at class-heatmap peaks (TransFusion query init).

    Args:
        num_classes: K, heatmap channels.
        num_queries: Q, queries per sample (top-K over classes x positions).
        embed_dims: C, query width; the feature map must have C channels (project it
            before, e.g. the decoder's ``in_channels``).
        nms_kernel_size: default local-maximum kernel (odd; 3 as in TransFusion).
        class_kernel_sizes: per-class kernel overrides, {class index: size}, e.g.
            ``{8: 1, 9: 1}`` for nuScenes pedestrian and traffic cone.
        heatmap_head: build the heatmap from the feature map with a small conv head
            (3x3 conv - ReLU - 1x1 conv) when the caller passes none.
        head_channels: hidden width of that head (default C).
    """

    def __init__(self, num_classes: int, num_queries: int = 200, embed_dims: int = 128,
                 nms_kernel_size: int = 3, class_kernel_sizes: Optional[dict[int, int]] = None,
                 heatmap_head: bool = False, head_channels: Optional[int] = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.num_queries = int(num_queries)
        self.embed_dims = int(embed_dims)
        self.nms_kernel_size = int(nms_kernel_size)
        # Config files may give the keys as strings after a round trip through JSON/YAML.
        self.class_kernel_sizes = {int(k): int(v) for k, v in (class_kernel_sizes or {}).items()}
        # Embedding == TransFusion's 1x1 conv of a one-hot class vector (without bias; the
        # map feature already carries one).
        self.class_embedding = nn.Embedding(self.num_classes, self.embed_dims)
        self.heatmap_head: Optional[nn.Module] = None
        if heatmap_head:
            hidden = int(head_channels or embed_dims)
            self.heatmap_head = nn.Sequential(
                nn.Conv2d(self.embed_dims, hidden, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(hidden, self.num_classes, 1))
            nn.init.constant_(self.heatmap_head[-1].bias, HEATMAP_PRIOR_BIAS)

    def forward(self, feature_map: Tensor, heatmap: Optional[Tensor] = None) -> InitialQueries:
        """Select the queries.

        Args:
            feature_map: (B, C, H, W) stream A's map (C = ``embed_dims``).
            heatmap: (B, K, H, W) class logits; built by the heatmap head when None.

        Returns:
            :class:`InitialQueries` with Q = ``num_queries``.
        """
        b, c, h, w = feature_map.shape
        if c != self.embed_dims:
            raise ValueError(f"feature map has {c} channels, HeatmapQueryInitializer expects "
                             f"embed_dims={self.embed_dims}")
        if heatmap is None:
            if self.heatmap_head is None:
                raise ValueError("no heatmap given and the initializer was built with "
                                 "heatmap_head=False")
            heatmap = self.heatmap_head(feature_map)
        if tuple(heatmap.shape) != (b, self.num_classes, h, w):
            raise ValueError(f"heatmap must be {(b, self.num_classes, h, w)}, got "
                             f"{tuple(heatmap.shape)}")
        total = self.num_classes * h * w
        if self.num_queries > total:
            raise ValueError(f"num_queries={self.num_queries} exceeds the {total} heatmap "
                             f"cells ({self.num_classes} classes x {h} x {w})")

        scores = heatmap.sigmoid()
        # Selection is discrete: no gradient needed through the suppression itself.
        with torch.no_grad():
            keep = local_maximum_mask(scores.detach(), self.nms_kernel_size,
                                      self.class_kernel_sizes)
            ranked = torch.where(keep, scores.detach(), torch.full_like(scores, -1.0))
            top_index = ranked.flatten(1).topk(self.num_queries, dim=1).indices  # (B, Q)
        class_ids = torch.div(top_index, h * w, rounding_mode="floor")
        flat_index = top_index % (h * w)
        peak_scores = scores.flatten(1).gather(1, top_index)

        rows = torch.div(flat_index, w, rounding_mode="floor")
        cols = flat_index % w
        positions = torch.stack([(cols.to(feature_map.dtype) + 0.5) / w,
                                 (rows.to(feature_map.dtype) + 0.5) / h], dim=-1)

        peak_features = feature_map.flatten(2).gather(
            2, flat_index.unsqueeze(1).expand(b, c, self.num_queries))  # (B, C, Q)
        features = peak_features.transpose(1, 2) + self.class_embedding(class_ids)
        return InitialQueries(features=features, positions=positions, class_ids=class_ids,
                              scores=peak_scores, heatmap=heatmap, flat_index=flat_index)
