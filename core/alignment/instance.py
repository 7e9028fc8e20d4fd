"""Instance-level alignment (MGCA's ITA, CLIP's objective): symmetric InfoNCE.

Two modalities give one embedding per sample; the positive pair is the same sample in the
other modality and every other sample of the *global* batch (all ranks) is a negative.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .distributed import gather_with_grad, rank_offset

__all__ = ["InstanceContrastiveLoss"]

# CLIP clamps the learnable logit scale at 100 (temperature >= 0.01) to keep training stable.
_MAX_LOGIT_SCALE = math.log(100.0)


@MODELS.register_module()
class InstanceContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between two modalities' embeddings.

    Args:
        temperature: softmax temperature T (initial value when learnable).
        learnable_temperature: learn T, stored as ``log(1 / T)`` (CLIP's logit scale) so the
            optimiser works on an unconstrained parameter; clamped to ``1 / T <= 100``.
        gather_distributed: take negatives from every rank (see :func:`gather_with_grad`).

    Scale under distribution: each rank returns the mean over its own rows, so the mean of
    the ranks' losses equals the single-process loss on the global batch, and the gradient
    w.r.t. the local embeddings is ``world_size`` times that of the global loss (cancelled
    by DDP's gradient averaging).
    """

    def __init__(self, temperature: float = 0.07, learnable_temperature: bool = False,
                 gather_distributed: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.gather_distributed = gather_distributed
        self.learnable_temperature = learnable_temperature
        init = torch.tensor(math.log(1.0 / temperature))
        if learnable_temperature:
            self.logit_scale = nn.Parameter(init)
        else:
            # A buffer so it moves with .to(device) and is saved, but is never trained.
            self.register_buffer("logit_scale", init)

    @property
    def temperature(self) -> float:
        """Current (clamped) temperature."""
        return float(1.0 / self.logit_scale.detach().clamp(max=_MAX_LOGIT_SCALE).exp())

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Loss between paired embeddings.

        Args:
            a: (B, D) embeddings of modality A (L2-normalised here).
            b: (B, D) embeddings of modality B, row i paired with ``a[i]``.

        Returns:
            Scalar: mean of the A->B and B->A cross-entropies, each averaged over the local
            rows. Logits are ``a @ b_all.T / T`` with ``b_all`` the (world * B, D) gathered
            embeddings; the positive of local row i is global column ``rank * B + i``.
        """
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(f"expected two (B, D) tensors of equal shape, got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        a = F.normalize(a, dim=-1)
        b = F.normalize(b, dim=-1)
        if self.gather_distributed:
            a_all, b_all = gather_with_grad(a), gather_with_grad(b)
            offset = rank_offset(a.shape[0])
        else:
            a_all, b_all, offset = a, b, 0
        scale = self.logit_scale.clamp(max=_MAX_LOGIT_SCALE).exp()
        targets = torch.arange(a.shape[0], device=a.device) + offset
        loss_ab = F.cross_entropy(scale * a @ b_all.T, targets)
        loss_ba = F.cross_entropy(scale * b @ a_all.T, targets)
        return 0.5 * (loss_ab + loss_ba)
