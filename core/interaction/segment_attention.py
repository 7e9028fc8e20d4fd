"""Sparse multi-head attention over variable-length key sets ("segments"), and the
cross-modal branch built on it.

A correspondence hands the encoder its cross-stream samples as a flat list of valid
(query, key) pairs (:class:`~interlace.core.interaction.streams.Gathered`): a LiDAR
pillar may see 0 to 120 image samples, a co-registered pixel exactly one, a report word
every patch. :func:`segment_attention` runs softmax attention on that list directly:
every tensor it builds is (P, ...) or (M, ...), so memory and time are linear in the
number of pairs P, with no padding to the largest key set (DeepInteraction groups pillars
by key count for the same reason).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .streams import Gathered

__all__ = ["segment_attention", "segment_attention_dense", "SampledCrossAttention",
           "position_mlp", "keep_samples"]


def segment_attention(query: Tensor, key: Tensor, value: Tensor, segment: Tensor,
                      scale: Optional[float] = None) -> Tensor:
    """Multi-head softmax attention where query ``m`` attends only to the pairs whose
    ``segment`` is ``m``.

    Args:
        query: (M, heads, d).
        key: (P, heads, d), one row per (query, key) pair.
        value: (P, heads, dv).
        segment: (P,) long in [0, M): the query each pair belongs to; pairs need not be
            sorted or grouped. Values outside [0, M) are not checked (that would cost a
            device sync) and make the index ops fail.
        scale: logit scale; defaults to ``d ** -0.5``.

    Returns:
        (M, heads, dv). A query with no pairs gets exact zeros, and its backward is
        finite (no 0/0 anywhere: empty segments are never read back).
    """
    if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
        raise ValueError("segment_attention expects query (M, h, d), key (P, h, d), value "
                         f"(P, h, dv); got {tuple(query.shape)}, {tuple(key.shape)}, "
                         f"{tuple(value.shape)}")
    if key.shape[:2] != value.shape[:2] or key.shape[0] != segment.shape[0]:
        raise ValueError(f"key {tuple(key.shape)}, value {tuple(value.shape)} and segment "
                         f"{tuple(segment.shape)} must share the pair dimension")
    if query.shape[1:] != key.shape[1:]:
        raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} differ in "
                         "heads or head width")
    num_queries, heads, dims = query.shape
    num_pairs = key.shape[0]
    scale = dims ** -0.5 if scale is None else scale
    segment = segment.long()

    # Softmax statistics in float32 whatever the input precision (bf16 autocast gives
    # bf16 projections): sums over many pairs lose too much in 8 mantissa bits.
    work = torch.promote_types(torch.promote_types(query.dtype, value.dtype), torch.float32)
    logits = (query.index_select(0, segment).to(work) * key.to(work)).sum(-1) * scale  # (P, heads)
    # The per-segment maximum is only a shift that keeps exp() in range; softmax does not
    # depend on it, so it is detached (its gradient would be zero anyway, up to ties).
    # Empty segments keep -inf here, but no pair ever reads them back.
    peak = logits.new_full((num_queries, heads), float("-inf")).scatter_reduce(
        0, segment.unsqueeze(1).expand(num_pairs, heads), logits.detach(), reduce="amax",
        include_self=True)
    weights = torch.exp(logits - peak.index_select(0, segment))  # (P, heads), max 1
    # Every pair's own segment holds at least that pair's weight of exp(0) = 1 for its
    # maximum, so the denominators that are read back are >= 1.
    denominator = logits.new_zeros(num_queries, heads).index_add(0, segment, weights)
    probs = weights / denominator.index_select(0, segment)
    out = value.new_zeros(num_queries, heads, value.shape[-1], dtype=work)
    return out.index_add(0, segment, probs.unsqueeze(-1) * value.to(work)).to(value.dtype)


def segment_attention_dense(query: Tensor, key: Tensor, value: Tensor, segment: Tensor,
                            scale: Optional[float] = None) -> Tensor:
    """Reference twin of :func:`segment_attention`: an (M, P) masked softmax. Memory is
    quadratic; for tests and tiny problems only. Same arguments and result."""
    num_queries, heads, dims = query.shape
    scale = dims ** -0.5 if scale is None else scale
    logits = torch.einsum("mhd,phd->hmp", query, key) * scale  # (heads, M, P)
    member = segment.view(1, -1) == torch.arange(num_queries, device=query.device).view(-1, 1)
    logits = logits.masked_fill(~member, float("-inf"))
    has_keys = member.any(-1)
    # Rows without keys would be all -inf (NaN softmax): give them a dummy finite row and
    # zero the result instead.
    logits = torch.where(has_keys.view(1, -1, 1), logits, torch.zeros_like(logits))
    probs = logits.softmax(-1) * has_keys.view(1, -1, 1)
    return torch.einsum("hmp,phd->mhd", probs, value)


def position_mlp(in_dims: int, embed_dims: int) -> nn.Sequential:
    """Small MLP positional encoding: (..., in_dims) geometry -> (..., embed_dims)."""
    return nn.Sequential(nn.Linear(in_dims, embed_dims), nn.ReLU(inplace=True),
                         nn.Linear(embed_dims, embed_dims))


@MODELS.register_module()
class SampledCrossAttention(nn.Module):
    """Cross-modal branch: every query of one stream attends to the other stream's
    features sampled at its corresponding positions (DeepInteraction's sampling-based
    alignment), given as :class:`Gathered` pairs.

    Args:
        embed_dims: channels C of the querying stream and of the output.
        num_heads: attention heads (C must divide by it).
        key_pos_dims: D of ``Gathered.key_position``; when set, an MLP encoding of the
            key positions is added to the keys (not to the values: the geometry steers
            which samples to read, the values carry the other stream's content). When
            None, key positions are ignored.
        key_dims: channels of ``Gathered.values``; defaults to ``embed_dims``.
        dropout: dropout on the output.
    """

    def __init__(self, embed_dims: int = 128, num_heads: int = 8,
                 key_pos_dims: Optional[int] = None, key_dims: Optional[int] = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        key_dims = embed_dims if key_dims is None else key_dims
        self.embed_dims, self.num_heads, self.key_dims = embed_dims, num_heads, key_dims
        self.query_proj = nn.Linear(embed_dims, embed_dims)
        self.key_proj = nn.Linear(key_dims, embed_dims)
        self.value_proj = nn.Linear(key_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.pos_encoder = position_mlp(key_pos_dims, key_dims) if key_pos_dims else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, gathered: Gathered) -> Tensor:
        """Attend from each query to its own gathered samples.

        Args:
            query: (B, N, C) features of the querying stream (``StreamFeatures.flatten``).
            gathered: pairs with ``batch_size == B``, ``num_queries_per_sample == N``,
                values (P, key_dims), optional key_position (P, key_pos_dims).

        Returns:
            (B, N, C) update; exact zeros for queries with no pairs (the output
            projection's bias is not added there either).
        """
        batch, queries, channels = query.shape
        if (gathered.batch_size, gathered.num_queries_per_sample) != (batch, queries):
            raise ValueError(f"gathered pairs are for {gathered.batch_size} x "
                             f"{gathered.num_queries_per_sample} queries, query is "
                             f"{tuple(query.shape)}")
        heads = self.num_heads
        head_dims = channels // heads
        values = gathered.values.to(query.dtype)
        keys_in = values
        if self.pos_encoder is not None:
            if gathered.key_position is None:
                raise ValueError("SampledCrossAttention was built with key_pos_dims but the "
                                 "correspondence gave no key_position")
            keys_in = values + self.pos_encoder(gathered.key_position.to(query.dtype))
        q = self.query_proj(query).reshape(batch * queries, heads, head_dims)
        k = self.key_proj(keys_in).view(-1, heads, head_dims)
        v = self.value_proj(values).view(-1, heads, head_dims)
        out = segment_attention(q, k, v, gathered.query_index)
        out = self.output_proj(out.view(batch, queries, channels))
        has_keys = torch.zeros(batch * queries, dtype=torch.bool, device=query.device)
        has_keys[gathered.query_index] = True
        return self.dropout(out).masked_fill(~has_keys.view(batch, queries, 1), 0.0)

    def extra_repr(self) -> str:
        return (f"embed_dims={self.embed_dims}, num_heads={self.num_heads}, "
                f"key_dims={self.key_dims}")


def keep_samples(gathered: Gathered, keep: Tensor) -> Gathered:
    """Drop the pairs of samples where ``keep`` (B,) is False, e.g. samples lacking one
    of the streams, so they receive no cross-modal update at all."""
    if bool(keep.all()):
        return gathered
    pair_keep = keep.to(torch.bool)[gathered.query_index // gathered.num_queries_per_sample]
    position = gathered.key_position
    return Gathered(values=gathered.values[pair_keep],
                    query_index=gathered.query_index[pair_keep],
                    num_queries_per_sample=gathered.num_queries_per_sample,
                    batch_size=gathered.batch_size,
                    key_position=None if position is None else position[pair_keep])

