"""Prototype-level alignment (MGCA's CPA, SwAV's swapped prediction).

Both modalities are scored against a shared set of learnable prototypes (unit vectors);
Sinkhorn-Knopp turns each modality's scores into soft cluster codes under the constraint
that every prototype receives an equal share of the batch (which prevents the collapse of
all samples onto one prototype); each modality then predicts the *other* modality's codes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .distributed import all_reduce_max, all_reduce_sum, get_world_size, is_distributed

__all__ = ["sinkhorn_knopp", "PrototypeAlignmentLoss"]


def _logsumexp_rows(x: Tensor, reduce: bool) -> Tensor:
    """log(sum over dim 0 of exp(x)), (1, K), over the global rows when `reduce`."""
    if not reduce:
        return torch.logsumexp(x, dim=0, keepdim=True)
    # Stable cross-rank log-sum-exp: shift by the global maximum, sum, shift back.
    peak = all_reduce_max(x.amax(dim=0, keepdim=True).contiguous())
    return peak + all_reduce_sum(torch.exp(x - peak).sum(dim=0, keepdim=True)).log()


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, iterations: int = 3,
                   distributed: bool = True) -> Tensor:
    """Soft equipartitioned assignment of samples to prototypes (SwAV's Sinkhorn-Knopp).

    Starts from ``Q = exp(scores / epsilon)`` normalised to total mass 1, then repeats
    `iterations` times: (1) scale each prototype (column) to total mass 1 / K, (2) scale each
    sample (row) to mass 1 / N; finally multiplies by N. The same steps as SwAV, computed in
    the log domain so that no entry under- or overflows (exp(1 / 0.05) is already 5e8).

    Marginals of the result: every row (sample) sums to exactly 1 after any number of
    iterations, because the row step comes last; every column (prototype) sums to N / K
    only in the limit of many iterations — after a few (3, as SwAV and MGCA) the column
    sums are merely pulled towards N / K. N is the GLOBAL number of samples when
    distributed: the column sums are all-reduced over ranks, so each rank's rows equal the
    corresponding rows of the single-process result on the concatenated batch.

    Args:
        scores: (N_local, K) similarities (no gradient is taken).
        epsilon: entropic regularisation; smaller = sharper codes.
        iterations: number of (column, row) normalisation rounds.
        distributed: all-reduce the sums over ranks (ignored when not distributed).

    Returns:
        (N_local, K) codes, in float64 for float64 input, else float32.
    """
    reduce = distributed and is_distributed()
    dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    log_q = scores.to(dtype) / epsilon
    num_local, num_prototypes = log_q.shape
    log_n = math.log(num_local * (get_world_size() if reduce else 1))
    log_k = math.log(num_prototypes)
    # Total mass 1 (a no-op for the result in exact arithmetic; kept to follow SwAV).
    log_q = log_q - torch.logsumexp(_logsumexp_rows(log_q, reduce), dim=1, keepdim=True)
    for _ in range(iterations):
        log_q = log_q - _logsumexp_rows(log_q, reduce) - log_k  # columns: 1 / K each
        # Rows are local: each sample's mass needs no communication.
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_n  # rows: 1 / N
    return torch.exp(log_q + log_n)


@MODELS.register_module()
class PrototypeAlignmentLoss(nn.Module):
    """Swapped prototype prediction between two modalities.

    Args:
        embed_dims: D, the embedding size.
        num_prototypes: K.
        epsilon: Sinkhorn-Knopp regularisation.
        sinkhorn_iterations: Sinkhorn-Knopp rounds.
        temperature: temperature of the predicted distribution ``softmax(scores / T)``.
        freeze_epochs: the prototypes get no gradient while ``epoch < freeze_epochs``
            (MGCA: 1). Training code (e.g. an mmengine hook's ``before_train_epoch``) calls
            :meth:`set_epoch`; the loss starts at epoch 0, i.e. frozen if freeze_epochs > 0.
        distributed: run Sinkhorn-Knopp over the global batch.

    How freezing works: while frozen, the forward pass uses a *detached* copy of the
    prototype weight, so the parameter's ``.grad`` stays ``None`` and optimisers skip it
    (no update, no weight decay, no optimiser state), like MGCA's ``param.grad = None``.
    ``requires_grad`` is not touched, so toggling never re-creates optimiser parameter
    groups. Under DDP the parameter is unused during those epochs: wrap the model with
    ``find_unused_parameters=True`` (or the first epoch's iterations will fail).
    """

    def __init__(self, embed_dims: int = 128, num_prototypes: int = 500, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, temperature: float = 0.2, freeze_epochs: int = 1,
                 distributed: bool = True) -> None:
        super().__init__()
        self.prototypes = nn.Linear(embed_dims, num_prototypes, bias=False)
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.temperature = temperature
        self.freeze_epochs = freeze_epochs
        self.distributed = distributed
        self.epoch = 0

    @property
    def frozen(self) -> bool:
        """Whether the prototypes currently receive no gradient."""
        return self.epoch < self.freeze_epochs

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the current (0-based) training epoch; unfreezes at `freeze_epochs`."""
        self.epoch = int(epoch)

    @torch.no_grad()
    def normalise_prototypes(self) -> None:
        """Project every prototype (weight row) back onto the unit sphere, in place.

        Done before every use (SwAV / MGCA) so scores are cosine similarities and the
        optimiser's step cannot grow a prototype to win every assignment.
        """
        weight = self.prototypes.weight
        weight.copy_(F.normalize(weight, dim=1))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Swapped-prediction loss.

        Args:
            a: (B, D) embeddings of modality A (L2-normalised here).
            b: (B, D) embeddings of modality B, row i paired with ``a[i]``.

        Returns:
            Scalar: 0.5 * (CE(codes_a, softmax(scores_b / T)) + CE(codes_b,
            softmax(scores_a / T))), each averaged over the local rows; codes come from
            Sinkhorn-Knopp on the detached (B, K) scores.
        """
        self.normalise_prototypes()
        weight = self.prototypes.weight
        if self.frozen:
            weight = weight.detach()
        scores_a = F.linear(F.normalize(a, dim=-1), weight)  # (B, K)
        scores_b = F.linear(F.normalize(b, dim=-1), weight)
        codes_a = sinkhorn_knopp(scores_a.detach(), self.epsilon, self.sinkhorn_iterations,
                                 self.distributed).to(scores_a.dtype)
        codes_b = sinkhorn_knopp(scores_b.detach(), self.epsilon, self.sinkhorn_iterations,
                                 self.distributed).to(scores_b.dtype)
        log_prob_a = F.log_softmax(scores_a / self.temperature, dim=-1)
        log_prob_b = F.log_softmax(scores_b / self.temperature, dim=-1)
        loss_a_target = -(codes_a * log_prob_b).sum(dim=-1).mean()  # B predicts A's codes
        loss_b_target = -(codes_b * log_prob_a).sum(dim=-1).mean()
        return 0.5 * (loss_a_target + loss_b_target)
