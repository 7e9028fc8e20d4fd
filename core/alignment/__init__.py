"""Multi-granularity cross-modal alignment losses (MGCA-style), modality-agnostic.

* :class:`InstanceContrastiveLoss` — sample level, symmetric InfoNCE with negatives from all
  ranks (:mod:`.instance`);
* :class:`TokenAlignmentLoss` — token level, word <-> patch cross-attention matching, with
  :func:`aggregate_word_pieces` and :func:`clip_and_renormalise` (:mod:`.token`);
* :class:`LocalMatchingLoss` — token level across samples, GLoRIA's word-region image-report
  score contrasted over the batch (:mod:`.local_matching`);
* :class:`PrototypeAlignmentLoss` — prototype level, Sinkhorn-Knopp codes and swapped
  prediction (:mod:`.prototype`);
* :func:`gather_with_grad` — the gradient-preserving all-gather they share (:mod:`.distributed`).

Importing this package registers the four losses in the ``interlace`` MODELS registry.
"""
from .distributed import gather_with_grad, get_rank, get_world_size, is_distributed, rank_offset
from .instance import InstanceContrastiveLoss
from .local_matching import LocalMatchingLoss, LocalMatchingOutput
from .prototype import PrototypeAlignmentLoss, sinkhorn_knopp
from .token import (DEFAULT_SPECIAL_TOKENS, TokenAlignmentLoss, TokenAlignmentOutput,
                    aggregate_word_pieces, clip_and_renormalise)

__all__ = [
    "gather_with_grad", "rank_offset", "is_distributed", "get_rank", "get_world_size",
    "InstanceContrastiveLoss", "TokenAlignmentLoss", "TokenAlignmentOutput",
    "aggregate_word_pieces", "clip_and_renormalise", "DEFAULT_SPECIAL_TOKENS",
    "PrototypeAlignmentLoss", "sinkhorn_knopp", "LocalMatchingLoss", "LocalMatchingOutput",
]
