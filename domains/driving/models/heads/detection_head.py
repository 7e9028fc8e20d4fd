"""DeepInteraction++'s 3D detection head: a dense class heatmap on the BEV picks the
queries, the predictive interaction decoder refines them layer by layer, alternating
between the LiDAR BEV and the cameras, and every layer predicts boxes (TransFusion, Bai et
al. CVPR 2022, Sec. 3; DeepInteraction, Yang et al. NeurIPS 2022, Sec. 3.3).

Flow (shapes for B samples, Q queries, K classes, an H x W BEV map):

1. dense heatmap: a small conv head on the BEV map (B, K, H, W). DeepInteraction++
   averages the probabilities of the heatmap of the interacted BEV (stream A) and of the
   LiDAR-only BEV (before the interaction encoder) when both are given; queries are
   picked on that average, detached (TransFusion's query initialisation is a selection,
   trained only through its own dense loss);
2. :class:`~interlace.core.interaction.PredictiveInteractionDecoder`: ``layer_streams``
   'a' (LiDAR BEV, box enlarged 2x) / 'b' (cameras, through the ``correspondence``);
   paper settings ('a', 'b', 'a', 'b', 'a'): one LiDAR layer, then 4 alternating;
   LiDAR-only models use only 'a' layers. Per layer: center (2), height (1), size (3),
   rot (2), vel (2) and class logits (K);
3. training: per layer, Hungarian matching (:class:`HungarianAssigner3D`), focal
   classification loss and L1 box loss (weight 0.25) on the matched queries; Gaussian
   focal loss on each dense heatmap;
4. inference: the last layer's boxes, score = sigmoid(class logit) x the heatmap score
   of the query's peak x one-hot(peak class) (TransFusion), no NMS.

Box codes are TransFusion's (:class:`TransFusionBoxCoder`); the decoder's 'center' head is
an offset in normalised map units added to the query position, so the predicted grid
centre is ``position * (W, H)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS, TASK_UTILS
from interlace.core.interaction import (Correspondence, DecoderOutput,
                                        PredictiveInteractionDecoder, StreamFeatures)
from interlace.core.interaction.query_init import HEATMAP_PRIOR_BIAS

from .assigner import HungarianAssigner3D
from .box_coder import TransFusionBoxCoder
from .box_footprint import PredictedBoxFootprint
from .heatmap_targets import class_heatmap_targets
from .losses import FocalLoss, GaussianFocalLoss, L1Loss, clip_sigmoid

__all__ = ["InteractionDetectionHead", "DetectionHeadOutput"]

# nuScenes pedestrian (8) and traffic cone (9): centres can be one cell apart, so no
# local-maximum suppression for them (TransFusion; docs/methods/deepinteraction.md).
NUSCENES_CLASS_KERNEL_SIZES = {8: 1, 9: 1}
_NUSCENES_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
# DeepInteraction++ refines the centres with look-forward-twice (DINO): each layer's loss
# also trains the previous layer's centre head. Set False for DeepInteraction (v1).
DEEPINTERACTION_PLUS_DECODER = dict(look_forward_twice=True)


@dataclass
class DetectionHeadOutput:
    """What :meth:`InteractionDetectionHead.forward` returns.

    Attributes:
        decoder: the decoder's output (per-layer predictions, query classes and scores).
        dense_heatmaps: {'bev': (B, K, H, W) logits of stream A's map, and 'lidar_only'
            when a LiDAR-only BEV was given}: what the dense heatmap loss supervises.
        grid_shape: (H, W) of the BEV map.
    """

    decoder: DecoderOutput
    dense_heatmaps: dict[str, Tensor] = field(default_factory=dict)
    grid_shape: tuple[int, int] = (0, 0)


def _heatmap_conv(in_channels: int, hidden: int, num_classes: int) -> nn.Sequential:
    # TransFusion's heatmap head: conv-BN-ReLU then a conv to K logits, focal prior bias.
    head = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
                         nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, num_classes, 3, padding=1))
    nn.init.constant_(head[-1].bias, HEATMAP_PRIOR_BIAS)
    return head


def _build(cfg: Union[dict, object], registry, default_type: type):
    # Plain dicts default to our own type, so the head builds the same whatever the
    # caller's default scope is.
    if not isinstance(cfg, dict):
        return cfg
    cfg = dict(cfg)
    type_ = cfg.pop("type", default_type.__name__)
    if type_ in (default_type, default_type.__name__):
        return default_type(**cfg)
    return registry.build(dict(type=type_, **cfg))


@MODELS.register_module()
class InteractionDetectionHead(nn.Module):
    """TransFusion-style detection head on the predictive interaction decoder.

    Args:
        in_channels: channels of stream A's BEV map (the map queries live on).
        num_classes: K (10 nuScenes classes).
        embed_dims: query width of the decoder.
        num_queries: Q (200 as published).
        layer_streams: decoder layers, 'a' = LiDAR BEV, 'b' = cameras; the paper's is
            ('a', 'b', 'a', 'b', 'a'); all 'a' for a LiDAR-only head.
        b_channels: channels of the camera features (None = ``embed_dims``).
        lidar_only_in_channels: channels of a LiDAR-only BEV whose heatmap is averaged with
            stream A's (DeepInteraction++); None builds no second heatmap head.
        heatmap_channels: hidden width of the heatmap conv heads.
        bbox_coder: :class:`TransFusionBoxCoder` or its config.
        assigner: :class:`HungarianAssigner3D` or its config (its ``pc_range`` defaults to
            the coder's).
        decoder: extra keyword arguments of the decoder (num_heads, ffn_dims, grid_size,
            enlarge_a, look_forward_twice (default True here, as DeepInteraction++), update,
            default_footprint_size...).
        nms_kernel_size, class_kernel_sizes: local-maximum suppression of the query
            selection (3 x 3; 1 x 1 for pedestrian and traffic cone by default).
        code_weights: per-code-entry L1 weights (TransFusion: 1 x 8, then 0.2 for velocity).
        loss_cls, loss_bbox, loss_heatmap: loss configs (type FocalLoss / L1Loss /
            GaussianFocalLoss by default).
        heatmap_min_overlap, heatmap_min_radius: of the Gaussian heatmap targets.
        per_layer_avg_factor: normalise each layer's losses by that layer's positives;
            False (TransFusion) divides every layer by the positives of all layers.
        max_detections: keep at most this many boxes per sample at inference (None: Q).
    """

    def __init__(self, in_channels: int, num_classes: int = 10, embed_dims: int = 128,
                 num_queries: int = 200,
                 layer_streams: Sequence[str] = ("a", "b", "a", "b", "a"),
                 b_channels: Optional[int] = None,
                 lidar_only_in_channels: Optional[int] = None, heatmap_channels: int = 128,
                 bbox_coder: Union[dict, TransFusionBoxCoder, None] = None,
                 assigner: Union[dict, HungarianAssigner3D, None] = None,
                 decoder: Optional[dict] = None, nms_kernel_size: int = 3,
                 class_kernel_sizes: Optional[dict[int, int]] = None,
                 code_weights: Sequence[float] = (1.0,) * 8 + (0.2, 0.2),
                 loss_cls: Optional[dict] = None, loss_bbox: Optional[dict] = None,
                 loss_heatmap: Optional[dict] = None, heatmap_min_overlap: float = 0.1,
                 heatmap_min_radius: int = 2, per_layer_avg_factor: bool = False,
                 max_detections: Optional[int] = None) -> None:
        super().__init__()
        self.num_classes, self.num_queries = int(num_classes), int(num_queries)
        self.bbox_coder: TransFusionBoxCoder = _build(
            bbox_coder if bbox_coder is not None else dict(pc_range=_NUSCENES_RANGE,
                                                           voxel_size=(0.075, 0.075)),
            TASK_UTILS, TransFusionBoxCoder)
        assigner = dict(assigner) if isinstance(assigner, dict) else assigner
        if assigner is None or isinstance(assigner, dict):
            assigner = {"pc_range": self.bbox_coder.pc_range, **(assigner or {})}
        self.assigner: HungarianAssigner3D = _build(assigner, TASK_UTILS, HungarianAssigner3D)
        code_size = self.bbox_coder.code_size
        if len(code_weights) != code_size:
            raise ValueError(f"code_weights has {len(code_weights)} entries, the coder's "
                             f"code_size is {code_size}")
        self.register_buffer("code_weights", torch.tensor(code_weights, dtype=torch.float32),
                             persistent=False)
        if class_kernel_sizes is None and self.num_classes == 10:
            class_kernel_sizes = NUSCENES_CLASS_KERNEL_SIZES

        heads = dict(center=2, height=1, size=3, rot=2)
        if code_size == 10:
            heads["vel"] = 2
        self.decoder = PredictiveInteractionDecoder(
            self.num_classes, heads, embed_dims=embed_dims, num_queries=num_queries,
            layer_streams=layer_streams, in_channels=in_channels, b_channels=b_channels,
            footprint_fn=PredictedBoxFootprint(self.bbox_coder.span),
            nms_kernel_size=nms_kernel_size, class_kernel_sizes=class_kernel_sizes,
            heatmap_head=False, **{**DEEPINTERACTION_PLUS_DECODER, **(decoder or {})})
        self.heatmap_conv = _heatmap_conv(in_channels, heatmap_channels, self.num_classes)
        self.lidar_only_heatmap_conv = (
            _heatmap_conv(lidar_only_in_channels, heatmap_channels, self.num_classes)
            if lidar_only_in_channels is not None else None)

        self.loss_cls = _build(loss_cls or {}, MODELS, FocalLoss)
        self.loss_bbox = _build(loss_bbox or {"loss_weight": 0.25}, MODELS, L1Loss)
        self.loss_heatmap = _build(loss_heatmap or {}, MODELS, GaussianFocalLoss)
        self.heatmap_min_overlap = float(heatmap_min_overlap)
        self.heatmap_min_radius = int(heatmap_min_radius)
        self.per_layer_avg_factor = bool(per_layer_avg_factor)
        self.max_detections = int(max_detections) if max_detections is not None else None

    # --- forward ----------------------------------------------------------------------
    def forward(self, a: Union[StreamFeatures, Tensor], b: Optional[StreamFeatures] = None,
                correspondence: Optional[Correspondence] = None,
                lidar_only_bev: Optional[Tensor] = None) -> DetectionHeadOutput:
        """Dense heatmap(s), query selection and the decoder.

        Args:
            a: stream A, the (interacted) LiDAR BEV: a single-view map stream whose first
                level is (B, C_in, H, W), or that tensor itself. (H, W) must be the coder's
                ``grid_shape``.
            b: stream B (camera views, (B * V, C_b, H_i, W_i) levels) or None (LiDAR-only,
                or cameras dropped: 'b' layers then keep the queries unchanged).
            correspondence: e.g. ``ProjectionCorrespondence`` for this batch (its
                ``bev_range`` must be the coder's x / y range); None skips 'b' layers.
            lidar_only_bev: (B, C_l, H, W) LiDAR BEV before the interaction encoder; its
                heatmap is averaged with A's (needs ``lidar_only_in_channels``).

        Returns:
            :class:`DetectionHeadOutput`.
        """
        if isinstance(a, Tensor):
            a = StreamFeatures(levels=[a])
        bev = a.levels[0]
        grid_shape = (int(bev.shape[-2]), int(bev.shape[-1]))
        if grid_shape != self.bbox_coder.grid_shape:
            raise ValueError(f"BEV map is {grid_shape} (H, W) but the box coder's range and "
                             f"cell size give {self.bbox_coder.grid_shape}")
        dense = {"bev": self.heatmap_conv(bev)}
        probabilities = dense["bev"].detach().sigmoid()
        if lidar_only_bev is not None:
            if self.lidar_only_heatmap_conv is None:
                raise ValueError("lidar_only_bev given but the head was built without "
                                 "lidar_only_in_channels")
            dense["lidar_only"] = self.lidar_only_heatmap_conv(lidar_only_bev)
            # DeepInteraction++: average of the two heatmaps' probabilities.
            probabilities = (probabilities + dense["lidar_only"].detach().sigmoid()) / 2
        selection = torch.logit(probabilities, eps=1e-6)
        output = self.decoder(a, b, correspondence, heatmap=selection)
        return DetectionHeadOutput(decoder=output, dense_heatmaps=dense, grid_shape=grid_shape)

    def layer_codes(self, layer: dict, grid_shape: Sequence[int]) -> Tensor:
        """One decoder layer's predictions as box codes (B, Q, code_size), the centre in
        grid units (``position * (W, H)``)."""
        h, w = int(grid_shape[0]), int(grid_shape[1])
        position = layer["position"]
        parts = [position * position.new_tensor([w, h]), layer["height"], layer["size"],
                 layer["rot"]]
        if self.bbox_coder.code_size == 10:
            parts.append(layer["vel"])
        return torch.cat(parts, dim=-1)

    # --- training ---------------------------------------------------------------------
    def loss(self, a: Union[StreamFeatures, Tensor], b: Optional[StreamFeatures] = None,
             correspondence: Optional[Correspondence] = None, *,
             gt_bboxes_3d: Sequence[Tensor], gt_labels_3d: Sequence[Tensor],
             lidar_only_bev: Optional[Tensor] = None) -> dict[str, Tensor]:
        """Forward and losses (arguments as :meth:`forward`, GT as :meth:`loss_by_feat`)."""
        output = self(a, b, correspondence, lidar_only_bev=lidar_only_bev)
        return self.loss_by_feat(output, gt_bboxes_3d, gt_labels_3d)

    def _layer_targets(self, layer: dict, grid_shape: Sequence[int],
                       gt_bboxes_3d: Sequence[Tensor], gt_labels_3d: Sequence[Tensor]
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Hungarian-matched targets of one layer: predicted codes (B, Q, D), class labels
        (B, Q) (K = background), code targets (B, Q, D), code weights (B, Q, D), IoU of the
        matched queries (P,)."""
        codes = self.layer_codes(layer, grid_shape)
        logits = layer["heatmap"]
        boxes = self.bbox_coder.decode_boxes(codes.detach())
        bsz, q, d = codes.shape
        labels = torch.full((bsz, q), self.num_classes, dtype=torch.long, device=codes.device)
        targets, weights = codes.new_zeros(bsz, q, d), codes.new_zeros(bsz, q, d)
        ious = []
        for s in range(bsz):
            gt_boxes = gt_bboxes_3d[s].to(codes.device, codes.dtype)
            gt_labels = gt_labels_3d[s].to(codes.device).long()
            result = self.assigner.assign(logits[s].detach(), boxes[s], gt_boxes, gt_labels)
            pos = result.positive
            matched = result.gt_index[pos]
            labels[s, pos] = gt_labels[matched]
            encoded = self.bbox_coder.encode(gt_boxes[matched])
            # nuScenes has boxes without a velocity (NaN): those entries get no loss.
            finite = torch.isfinite(encoded)
            targets[s, pos] = torch.nan_to_num(encoded, nan=0.0, posinf=0.0, neginf=0.0)
            weights[s, pos] = self.code_weights.to(codes.dtype) * finite.to(codes.dtype)
            ious.append(result.ious[pos])
        return codes, labels, targets, weights, torch.cat(ious)

    def heatmap_targets(self, gt_bboxes_3d: Sequence[Tensor], gt_labels_3d: Sequence[Tensor],
                        like: Tensor) -> Tensor:
        """(B, K, H, W) Gaussian heatmap targets on the coder's grid."""
        coder = self.bbox_coder
        maps = [class_heatmap_targets(boxes, labels, self.num_classes, coder.grid_shape,
                                      coder.pc_range[:2], coder.cell_size,
                                      self.heatmap_min_overlap, self.heatmap_min_radius)
                for boxes, labels in zip(gt_bboxes_3d, gt_labels_3d)]
        return torch.stack(maps).to(like.device, like.dtype)

    def loss_by_feat(self, output: DetectionHeadOutput, gt_bboxes_3d: Sequence[Tensor],
                     gt_labels_3d: Sequence[Tensor]) -> dict[str, Tensor]:
        """Losses of a forward pass.

        Args:
            output: :meth:`forward`'s result.
            gt_bboxes_3d: per sample (N_s, 9) GT boxes ``(x, y, z, l, w, h, yaw, vx, vy)``,
                geometric centre, metres (7 columns when the coder has no velocity).
            gt_labels_3d: per sample (N_s,) class indices.

        Returns:
            ``layer{l}_loss_cls`` and ``layer{l}_loss_bbox`` for every decoder layer,
            ``loss_heatmap`` (and ``loss_heatmap_lidar_only``), and ``matched_ious`` (the
            last layer's mean IoU of matched queries; a log value, not a loss).
        """
        if len(gt_bboxes_3d) != len(gt_labels_3d):
            raise ValueError("gt_bboxes_3d and gt_labels_3d must have one entry per sample")
        layers = output.decoder.layers
        per_layer = [self._layer_targets(layer, output.grid_shape, gt_bboxes_3d, gt_labels_3d)
                     for layer in layers]
        positives = [float((labels < self.num_classes).sum()) for _, labels, _, _, _ in per_layer]
        losses: dict[str, Tensor] = {}
        for index, (layer, (codes, labels, targets, weights, _)) in enumerate(
                zip(layers, per_layer)):
            # TransFusion divides every layer's loss by the positives of all layers.
            avg = max(positives[index] if self.per_layer_avg_factor else sum(positives), 1.0)
            logits = layer["heatmap"]
            losses[f"layer{index}_loss_cls"] = self.loss_cls(
                logits.reshape(-1, self.num_classes), labels.reshape(-1), avg_factor=avg)
            losses[f"layer{index}_loss_bbox"] = self.loss_bbox(
                codes.reshape(-1, codes.shape[-1]), targets.reshape(-1, targets.shape[-1]),
                weights.reshape(-1, weights.shape[-1]), avg_factor=avg)

        first = next(iter(output.dense_heatmaps.values()))
        target = self.heatmap_targets(gt_bboxes_3d, gt_labels_3d, first)
        peaks = max(float(target.eq(1).sum()), 1.0)
        for name, logits in output.dense_heatmaps.items():
            key = "loss_heatmap" if name == "bev" else f"loss_heatmap_{name}"
            losses[key] = self.loss_heatmap(clip_sigmoid(logits), target, avg_factor=peaks)
        last_ious = per_layer[-1][4]
        losses["matched_ious"] = (last_ious.mean() if last_ious.numel()
                                  else last_ious.new_zeros(())).detach()
        return losses

    # --- inference --------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, a: Union[StreamFeatures, Tensor], b: Optional[StreamFeatures] = None,
                correspondence: Optional[Correspondence] = None,
                lidar_only_bev: Optional[Tensor] = None) -> list[dict[str, Tensor]]:
        """Forward and detections (arguments as :meth:`forward`, result as
        :meth:`predict_by_feat`)."""
        return self.predict_by_feat(self(a, b, correspondence, lidar_only_bev=lidar_only_bev))

    def predict_by_feat(self, output: DetectionHeadOutput) -> list[dict[str, Tensor]]:
        """Detections from the last decoder layer.

        Returns:
            per sample ``{'bboxes_3d': (N, 9) (x, y, z, l, w, h, yaw, vx, vy) geometric
            centre, 'scores_3d': (N,), 'labels_3d': (N,) long}``, N <= Q after the score
            threshold and post-centre range, sorted by decreasing score.
        """
        decoder = output.decoder
        last = decoder.layers[-1]
        one_hot = F.one_hot(decoder.class_ids, self.num_classes).to(last["heatmap"].dtype)
        # TransFusion: the class score times the heatmap score of the query's peak,
        # restricted to the class that proposed the query.
        scores = last["heatmap"].sigmoid() * decoder.scores.unsqueeze(-1) * one_hot
        codes = self.layer_codes(last, output.grid_shape)
        results = []
        for det in self.bbox_coder.decode(scores, codes, filter=True):
            order = det["scores"].argsort(descending=True)
            if self.max_detections is not None:
                order = order[:self.max_detections]
            results.append(dict(bboxes_3d=det["bboxes"][order], scores_3d=det["scores"][order],
                                labels_3d=det["labels"][order]))
        return results
