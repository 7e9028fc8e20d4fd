"""MGCA: multi-granularity cross-modal alignment of chest X-rays and reports (NeurIPS 2022).

Total loss = instance (ITA) + token (CTA) + prototype (CPA) alignment, each weighted; a
weight of 0 removes that loss and the heads only it uses (ConVIRT = instance only). An
optional fourth term, cross-sample local matching (words find their regions in their own
image rather than in the batch's others, :class:`~interlace.core.alignment.LocalMatchingLoss`),
is off by default (weight 0: the published MGCA); it shares the token level's projection
heads. ``configs/medical/mgca_matching_resnet18_minilm_synthetic.py`` uses it instead of
CTA, which does not ground words on the generated set (see that config).
The losses live in :mod:`interlace.core.alignment`; this module wires encoders, projection
heads and losses together.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .data_preprocessor import CxrReportDataPreprocessor
from .projection import ProjectionHead

__all__ = ["MGCA"]

_LOSS_NAMES = ("instance", "token", "prototype", "local_matching")
_DEFAULT_WEIGHTS = dict(instance=1.0, token=1.0, prototype=1.0, local_matching=0.0)


def _build(module: dict | nn.Module) -> nn.Module:
    return MODELS.build(module) if isinstance(module, dict) else module


def _report_of(sample: Any) -> str:
    """The report text of a data sample (a dict or a :class:`BaseDataElement`)."""
    if isinstance(sample, Mapping):
        return sample["report"]
    if isinstance(sample, BaseDataElement) and "report" in sample:
        return sample.report
    raise KeyError(f"data sample of type {type(sample).__name__} holds no 'report'")


@MODELS.register_module()
class MGCA(BaseModel):
    """Image-report pre-training with instance, token and prototype alignment.

    Args:
        image_encoder: config or module returning :class:`ImageFeatures` and exposing
            ``global_dims`` / ``local_dims`` (``ResNetImageEncoder``, ``ViTImageEncoder``).
        text_encoder: config or module returning :class:`ReportFeatures` and exposing
            ``embed_dims`` (``ReportTextEncoder``).
        embed_dims: shared embedding size (MGCA: 128).
        hidden_dims: projection heads' hidden size (MGCA: 2048).
        instance_loss, token_loss, prototype_loss, local_matching_loss: loss configs;
            ``embed_dims`` of the prototype loss is set to `embed_dims`.
        loss_weights: ``dict(instance=, token=, prototype=, local_matching=)``; a missing
            key means 1.0 (0.0 for ``local_matching``, which MGCA does not have) and 0
            skips that loss entirely.
        data_preprocessor: defaults to ``CxrReportDataPreprocessor``.
    """

    def __init__(self, image_encoder: dict | nn.Module, text_encoder: dict | nn.Module,
                 embed_dims: int = 128, hidden_dims: int = 2048,
                 instance_loss: Optional[dict] = None, token_loss: Optional[dict] = None,
                 prototype_loss: Optional[dict] = None,
                 local_matching_loss: Optional[dict] = None,
                 loss_weights: Optional[dict[str, float]] = None,
                 data_preprocessor: Optional[dict | nn.Module] = None,
                 init_cfg: Optional[dict] = None) -> None:
        # Built here from the interlace registry: BaseModel would look the type up in
        # mmengine's root registry, which does not see it without a default scope.
        if data_preprocessor is None:
            data_preprocessor = CxrReportDataPreprocessor()
        data_preprocessor = _build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        weights = dict(_DEFAULT_WEIGHTS)
        unknown = set(loss_weights or {}) - set(_LOSS_NAMES)
        if unknown:
            raise KeyError(f"unknown loss weights {sorted(unknown)}; use {list(_LOSS_NAMES)}")
        weights.update(loss_weights or {})
        self.loss_weights = {k: float(v) for k, v in weights.items()}

        self.image_encoder = _build(image_encoder)
        self.text_encoder = _build(text_encoder)
        self.image_global_proj = ProjectionHead(self.image_encoder.global_dims, hidden_dims,
                                                embed_dims)
        self.report_global_proj = ProjectionHead(self.text_encoder.embed_dims, hidden_dims,
                                                 embed_dims)
        # Only the losses in use (and the heads they need) are built, so no parameter is
        # left without a gradient (DDP) and checkpoints hold no dead weights.
        self.instance_loss = self.token_loss = self.prototype_loss = None
        self.local_matching_loss = None
        self.image_local_proj = self.word_local_proj = None
        if self.loss_weights["instance"]:
            self.instance_loss = MODELS.build(
                instance_loss or dict(type="InstanceContrastiveLoss", temperature=0.07))
        if self.loss_weights["token"]:
            self.token_loss = MODELS.build(token_loss or dict(type="TokenAlignmentLoss"))
        if self.loss_weights["local_matching"]:
            self.local_matching_loss = MODELS.build(
                local_matching_loss or dict(type="LocalMatchingLoss"))
        if self.token_loss is not None or self.local_matching_loss is not None:
            self.image_local_proj = ProjectionHead(self.image_encoder.local_dims, hidden_dims,
                                                   embed_dims)
            self.word_local_proj = ProjectionHead(self.text_encoder.embed_dims, hidden_dims,
                                                  embed_dims)
        if self.loss_weights["prototype"]:
            cfg = dict(prototype_loss or dict(type="PrototypeAlignmentLoss"))
            cfg["embed_dims"] = embed_dims
            self.prototype_loss = MODELS.build(cfg)

    def set_epoch(self, epoch: int) -> None:
        """Forward the (0-based) training epoch to the prototype loss (freezing)."""
        if self.prototype_loss is not None:
            self.prototype_loss.set_epoch(epoch)

    @staticmethod
    def _stack(inputs: Tensor | Sequence[Tensor]) -> Tensor:
        return inputs if isinstance(inputs, Tensor) else torch.stack(list(inputs))

    def extract_image_features(self, images: Tensor | Sequence[Tensor],
                               projected: bool = False) -> Tensor:
        """Image features for downstream use (e.g. a linear probe on frozen features).

        Args:
            images: (B, C, H, W) or a list of (C, H, W).
            projected: False (MGCA's linear probe) = the encoder's global feature
                (B, global_dims); True = the L2-normalised embedding (B, embed_dims).
        """
        features = self.image_encoder(self._stack(images)).global_features
        if projected:
            features = F.normalize(self.image_global_proj(features), dim=-1)
        return features

    def forward(self, inputs: Tensor | Sequence[Tensor],
                data_samples: Optional[Sequence[Any]] = None,
                mode: str = "tensor") -> dict[str, Tensor]:
        """Run the model.

        Args:
            inputs: images (B, C, H, W) or a list of B (C, H, W) tensors.
            data_samples: B dicts or data elements holding ``report`` (needed for 'loss').
            mode: 'loss' -> ``dict(loss_instance, loss_token, loss_prototype)`` (the ones
                with a non-zero weight, already weighted); 'tensor' / 'predict' ->
                ``dict(image_global (B, E), report_global (B, E))``, L2-normalised
                (``report_global`` only when data samples are given).
        """
        images = self._stack(inputs)
        if mode == "loss":
            if data_samples is None:
                raise ValueError("mode='loss' needs data_samples holding the reports")
            return self.loss(images, [_report_of(s) for s in data_samples])
        if mode not in ("tensor", "predict"):
            raise ValueError(f"unknown mode {mode!r}; use 'loss', 'tensor' or 'predict'")
        out = dict(image_global=self.extract_image_features(images, projected=True))
        if data_samples is not None:
            text = self.text_encoder([_report_of(s) for s in data_samples])
            out["report_global"] = F.normalize(self.report_global_proj(text.report_features),
                                               dim=-1)
        return out

    def loss(self, images: Tensor, reports: Sequence[str]) -> dict[str, Tensor]:
        """The weighted alignment losses for images (B, C, H, W) and their B reports."""
        image = self.image_encoder(images)
        text = self.text_encoder(reports)
        image_emb = self.image_global_proj(image.global_features)  # (B, E)
        report_emb = self.report_global_proj(text.report_features)  # (B, E)
        losses: dict[str, Tensor] = {}
        if self.instance_loss is not None:
            losses["loss_instance"] = (self.loss_weights["instance"]
                                       * self.instance_loss(image_emb, report_emb))
        if self.image_local_proj is not None:
            patches = self.image_local_proj(image.local_features)  # (B, N, E)
            words = self.word_local_proj(text.word_embeddings, text.word_mask)  # (B, W, E)
        if self.token_loss is not None:
            token = self.token_loss(words, text.word_mask, text.word_weights, patches,
                                    image.patch_weights)
            losses["loss_token"] = self.loss_weights["token"] * token.loss
        if self.local_matching_loss is not None:
            matching = self.local_matching_loss(words, text.word_mask, text.word_weights,
                                                patches)
            losses["loss_local_matching"] = (self.loss_weights["local_matching"]
                                             * matching.loss)
        if self.prototype_loss is not None:
            losses["loss_prototype"] = (self.loss_weights["prototype"]
                                        * self.prototype_loss(image_emb, report_emb))
        return losses
