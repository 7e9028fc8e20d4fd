"""The three losses of the TransFusion / DeepInteraction detection head, with mmdet's
conventions so published loss weights keep their meaning.

- :class:`FocalLoss`: sigmoid focal loss (Lin et al. 2017) on per-query class logits,
  gamma 2, alpha 0.25; background is "all classes negative".
- :class:`GaussianFocalLoss`: CenterNet's penalty-reduced focal loss on the dense class
  heatmap against Gaussian-splatted targets (Law & Deng 2018; Zhou et al. 2019), alpha 2,
  gamma 4.
- :class:`L1Loss`: L1 on box codes with per-element weights (code weights x positives).

Reduction (mmdet's ``weight_reduce_loss``): element losses times ``weight``, then
``sum / avg_factor`` when ``avg_factor`` is given (the head passes the number of positive
queries / heatmap peaks), otherwise the plain mean; finally times ``loss_weight``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["FocalLoss", "GaussianFocalLoss", "L1Loss", "clip_sigmoid", "reduce_loss"]

# Keeps log() finite where a probability reaches 0 or 1 (as mmdet's GaussianFocalLoss).
_EPS = 1e-12


def clip_sigmoid(logits: Tensor, eps: float = 1e-4) -> Tensor:
    """sigmoid clamped to [eps, 1 - eps]: TransFusion feeds this to the Gaussian focal
    loss so a saturated heatmap cannot produce log(0)."""
    return logits.sigmoid().clamp(min=eps, max=1 - eps)


def reduce_loss(loss: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None) -> Tensor:
    """Weighted sum / avg_factor, or the weighted mean over all elements without one."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return loss.mean()
    return loss.sum() / avg_factor


def _as_one_hot(target: Tensor, num_classes: int) -> Tensor:
    # Label num_classes (or any out-of-range label) means background: an all-zero row.
    if target.dtype in (torch.long, torch.int32, torch.int64):
        one_hot = F.one_hot(target.long().clamp(0, num_classes), num_classes + 1)
        return one_hot[..., :num_classes].float()
    return target.float()


@MODELS.register_module()
class FocalLoss(nn.Module):
    """Sigmoid focal loss.

    Args:
        gamma: focusing exponent (2).
        alpha: weight of the positive term; negatives get 1 - alpha (0.25).
        loss_weight: scale of the reduced loss.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.gamma, self.alpha, self.loss_weight = float(gamma), float(alpha), float(loss_weight)

    def forward(self, logits: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None) -> Tensor:
        """Focal loss of class logits.

        Args:
            logits: (N, K) class logits.
            target: (N,) long labels in [0, K] (K = background) or (N, K) float targets.
            weight: (N,) per-sample or (N, K) per-element weights.
            avg_factor: divisor of the summed loss (e.g. number of positives).

        Returns:
            scalar loss.
        """
        target = _as_one_hot(target, logits.shape[-1]).to(logits.dtype)
        p = logits.sigmoid()
        # pt is the probability of the *wrong* answer: large for hard examples.
        pt = (1 - p) * target + p * (1 - target)
        focal_weight = (self.alpha * target + (1 - self.alpha) * (1 - target)) * pt.pow(self.gamma)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * focal_weight
        if weight is not None and weight.dim() == loss.dim() - 1:
            weight = weight.unsqueeze(-1)
        return self.loss_weight * reduce_loss(loss, weight, avg_factor)


@MODELS.register_module()
class GaussianFocalLoss(nn.Module):
    """CenterNet focal loss against a Gaussian heatmap.

    Cells with target exactly 1 are positives; every other cell is a negative whose
    penalty is reduced by ``(1 - target)^gamma`` near a peak.

    Args:
        alpha: exponent on the prediction error (2).
        gamma: exponent of the negatives' penalty reduction (4).
        loss_weight: scale of the reduced loss.
    """

    def __init__(self, alpha: float = 2.0, gamma: float = 4.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.loss_weight = float(alpha), float(gamma), float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None) -> Tensor:
        """Loss of heatmap probabilities.

        Args:
            pred: (B, K, H, W) probabilities in (0, 1) (e.g. :func:`clip_sigmoid`).
            target: same shape, Gaussian targets in [0, 1] with peaks of exactly 1.
            weight: broadcastable element weights.
            avg_factor: divisor of the summed loss (number of peaks).

        Returns:
            scalar loss.
        """
        target = target.to(pred.dtype)
        pos = target.eq(1).to(pred.dtype)
        neg_weight = (1 - target).pow(self.gamma)
        pos_loss = -(pred + _EPS).log() * (1 - pred).pow(self.alpha) * pos
        neg_loss = -(1 - pred + _EPS).log() * pred.pow(self.alpha) * neg_weight
        return self.loss_weight * reduce_loss(pos_loss + neg_loss, weight, avg_factor)


@MODELS.register_module()
class L1Loss(nn.Module):
    """L1 loss with per-element weights.

    Args:
        loss_weight: scale of the reduced loss (0.25 for TransFusion's box loss).
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None) -> Tensor:
        """L1 loss.

        Args:
            pred, target: (N, D) (any equal shapes).
            weight: same shape (or broadcastable): code weights x positive mask.
            avg_factor: divisor of the summed loss (number of positives).

        Returns:
            scalar loss.
        """
        if target.numel() == 0:
            return pred.sum() * 0.0
        return self.loss_weight * reduce_loss((pred - target).abs(), weight, avg_factor)
