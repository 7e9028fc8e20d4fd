"""Cross-rank helpers for contrastive losses: an all-gather that keeps gradients.

A contrastive loss wants negatives from the whole global batch, but ``dist.all_gather``
returns tensors detached from the graph. :func:`gather_with_grad` gathers every rank's
embeddings and routes the gradient of the gathered copies back to the rank that owns them.
Everything degrades to the identity when ``torch.distributed`` is not initialised or runs a
single process, so the losses work unchanged in single-process training and in tests.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "get_world_size", "get_rank", "gather_with_grad", "rank_offset",
           "all_reduce_sum", "all_reduce_max"]


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size() -> int:
    """Number of ranks, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def rank_offset(batch: int) -> int:
    """Index of this rank's first row in the gathered global batch: ``rank * batch``.

    Assumes every rank holds the same local batch size (``all_gather`` needs equal shapes).
    """
    return get_rank() * batch


def all_reduce_sum(x: Tensor) -> Tensor:
    """In-place sum over ranks (no-op when not distributed); returns `x` for chaining."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_max(x: Tensor) -> Tensor:
    """In-place max over ranks (no-op when not distributed); returns `x` for chaining."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


class _GatherWithGrad(torch.autograd.Function):
    """all_gather in forward; in backward, this rank's slice of the summed gradient.

    Why the sum: every rank r computes its own loss L_r from the *same* gathered tensor, so
    the local embeddings x_k of rank k influence every L_r. The objective being optimised is
    the sum (DDP then averages, see below) of all L_r, and its derivative w.r.t. x_k is
    sum_r dL_r / d(gathered[k-slice]). Each rank only holds its own dL_r / d(gathered), so the
    gradients are all-reduced (summed) and each rank keeps the slice of its own rows.
    Without the sum, the terms coming from the other ranks' losses would be lost.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        ctx.rank, ctx.batch = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        # Clone: all_reduce is in-place and autograd may still hold `grad` elsewhere.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start:start + ctx.batch]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` from all ranks in rank order, keeping the gradient of the local slice.

    Args:
        x: (B, ...) local tensor; B must be equal on every rank.

    Returns:
        (world * B, ...) tensor; rows ``rank * B : (rank + 1) * B`` are this rank's `x`.
        The identity (same tensor) when not distributed.

    Gradient scale: with a per-rank loss L_r that is a mean over the rank's own B rows, the
    gradient reaching the local `x` is ``world`` times the gradient of the global-batch
    mean loss (1 / world) * sum_r L_r. DDP averages parameter gradients over ranks, which
    divides that factor out again, so parameters get exactly the global-loss gradient.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)
