"""One layer of the predictive interaction decoder: queries read one stream inside their
footprint.

Post-norm transformer layer (TransFusion / DeepInteraction):

1. self-attention among the queries, with a learned encoding of the query position
   added to queries and keys (so nearby proposals can suppress / inform each other);
2. an update from the features sampled inside the query's footprint, either
   - ``'dynamic_conv'`` (Sparse R-CNN, as in DeepInteraction): the query generates the
     weights of two 1x1 convs applied to its S samples; the result is flattened (keeping
     where in the footprint each sample lies) and projected back to C; or
   - ``'attention'``: the query attends over the samples (keys carry a learned
     encoding of the sample's grid slot);
3. a feed-forward network.

The footprint features come in one of two forms:

- a dense block (B, Q, S, C) from RoI sampling on a map (every query sees it);
- a :class:`Gathered` of (query, key) pairs from the other stream's views through the
  correspondence: for each view that sees a query, its S = grid_size**2 samples, in grid
  order. ``'dynamic_conv'`` averages the per-view RoI blocks of the views that see the
  query; ``'attention'`` attends over all its pairs. A query with no pairs is *unseen*:
  its output is its input, unchanged.
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .segment_attention import segment_attention
from .streams import Gathered

__all__ = ["PredictiveInteractionDecoderLayer", "pair_slots"]


def pair_slots(gathered: Gathered, samples_per_view: int) -> tuple[Tensor, Tensor]:
    """Grid slot of every pair and the number of views that see every query.

    Pairs of one query must come as whole blocks of ``samples_per_view`` consecutive (in
    pair order) samples per view, each block in grid order (the contract of
    ``Correspondence.gather_footprint``).

    Returns:
        slot: (P,) long in [0, S), the pair's position in its view's grid.
        views: (B * Q,) long, views per query (0 = unseen).
    """
    counts = gathered.keys_per_query().flatten()
    if bool((counts % samples_per_view).any()):
        bad = int((counts % samples_per_view != 0).nonzero()[0])
        raise ValueError(f"gather_footprint gave query {bad} {int(counts[bad])} pairs, not a "
                         f"multiple of grid_size**2={samples_per_view}")
    order = torch.argsort(gathered.query_index, stable=True)
    first = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(order.numel(), device=order.device) - first[gathered.query_index[order]]
    slot = torch.empty_like(order)
    slot[order] = rank_sorted % samples_per_view
    return slot, counts // samples_per_view


class _DynamicConv(nn.Module):
    """Sparse R-CNN dynamic interaction: query-generated 1x1 convs over the S samples."""

    def __init__(self, embed_dims: int, dynamic_dims: int, num_samples: int) -> None:
        super().__init__()
        self.embed_dims, self.dynamic_dims = embed_dims, dynamic_dims
        self.params = nn.Linear(embed_dims, 2 * embed_dims * dynamic_dims)
        self.norm1 = nn.LayerNorm(dynamic_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        # Flatten + linear keeps the spatial layout of the footprint (which side of the
        # query the evidence lies on), the cue that lets the decoder regress offsets.
        self.out = nn.Linear(num_samples * embed_dims, embed_dims)
        self.norm3 = nn.LayerNorm(embed_dims)

    def forward(self, query: Tensor, roi: Tensor) -> Tensor:
        """query (M, C), roi (M, S, C) -> (M, C)."""
        c, d = self.embed_dims, self.dynamic_dims
        params = self.params(query)
        w1 = params[:, :c * d].view(-1, c, d)
        w2 = params[:, c * d:].view(-1, d, c)
        x = F.relu(self.norm1(torch.bmm(roi, w1)))
        x = F.relu(self.norm2(torch.bmm(x, w2)))
        return F.relu(self.norm3(self.out(x.flatten(1))))


@MODELS.register_module()
class PredictiveInteractionDecoderLayer(nn.Module):
    """Self-attention + footprint update + FFN for decoder queries.

    Args:
        embed_dims: C.
        num_heads: heads of the self-attention (and of the attention update).
        ffn_dims: hidden width of the FFN.
        dropout: dropout after each sub-block, before its residual.
        grid_size: G; footprint features have S = G * G samples per view.
        update: ``'dynamic_conv'`` or ``'attention'`` (see module docstring).
        dynamic_dims: inner width of the dynamic convs.
    """

    def __init__(self, embed_dims: int = 128, num_heads: int = 8, ffn_dims: int = 512,
                 dropout: float = 0.0, grid_size: int = 7, update: str = "dynamic_conv",
                 dynamic_dims: int = 64) -> None:
        super().__init__()
        if update not in ("dynamic_conv", "attention"):
            raise ValueError(f"update must be 'dynamic_conv' or 'attention', got {update!r}")
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.grid_size, self.num_samples = grid_size, grid_size * grid_size
        self.update = update
        # Positional encoding of the query's normalised (x, y); an MLP as TransFusion's
        # learned position embedding (no BatchNorm: decoder batches can be tiny).
        self.pos_embed = nn.Sequential(nn.Linear(2, embed_dims), nn.ReLU(inplace=True),
                                       nn.Linear(embed_dims, embed_dims))
        self.self_attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=dropout,
                                               batch_first=True)
        if update == "dynamic_conv":
            self.dynamic_conv = _DynamicConv(embed_dims, dynamic_dims, self.num_samples)
        else:
            self.slot_embed = nn.Embedding(self.num_samples, embed_dims)
            self.q_proj = nn.Linear(embed_dims, embed_dims)
            self.k_proj = nn.Linear(embed_dims, embed_dims)
            self.v_proj = nn.Linear(embed_dims, embed_dims)
            self.o_proj = nn.Linear(embed_dims, embed_dims)
        self.ffn = nn.Sequential(nn.Linear(embed_dims, ffn_dims), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(ffn_dims, embed_dims))
        self.norm1 = nn.LayerNorm(embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.dropout = nn.Dropout(dropout)

    # --- footprint updates ------------------------------------------------------------
    def _update_dense(self, query: Tensor, pos: Tensor, roi: Tensor) -> Tensor:
        """query, pos (M, C); roi (M, S, C) -> (M, C)."""
        if self.update == "dynamic_conv":
            return self.dynamic_conv(query, roi)
        m, s = roi.shape[:2]
        segment = torch.arange(m, device=roi.device).repeat_interleave(s)
        slot = torch.arange(s, device=roi.device).repeat(m)
        return self._attend(query, pos, roi.reshape(m * s, -1), segment, slot)

    def _attend(self, query: Tensor, pos: Tensor, values: Tensor, segment: Tensor,
                slot: Tensor) -> Tensor:
        h, d = self.num_heads, self.embed_dims // self.num_heads
        q = self.q_proj(query + pos).view(-1, h, d)
        k = self.k_proj(values + self.slot_embed(slot)).view(-1, h, d)
        v = self.v_proj(values).view(-1, h, d)
        return self.o_proj(segment_attention(q, k, v, segment).reshape(-1, self.embed_dims))

    def _update_pairs(self, query: Tensor, pos: Tensor, gathered: Gathered) -> tuple[Tensor, Tensor]:
        """query, pos (B*Q, C) -> update (B*Q, C) (zeros where unseen), seen (B*Q,)."""
        n = query.shape[0]
        if gathered.batch_size * gathered.num_queries_per_sample != n:
            raise ValueError(f"gathered pairs are for {gathered.batch_size} x "
                             f"{gathered.num_queries_per_sample} queries, the layer has {n}")
        slot, views = pair_slots(gathered, self.num_samples)
        seen = views > 0
        update = query.new_zeros(query.shape)
        seen_index = seen.nonzero().squeeze(1)
        if seen_index.numel() == 0:
            return update, seen
        # Work on the seen queries only: compact index of each pair's query.
        compact = torch.full((n,), -1, dtype=torch.long, device=query.device)
        compact[seen_index] = torch.arange(seen_index.numel(), device=query.device)
        segment = compact[gathered.query_index]
        values = gathered.values.to(query.dtype)
        if self.update == "dynamic_conv":
            # Average the per-view RoI blocks: sum into (M * S, C), divide by views.
            m, s = seen_index.numel(), self.num_samples
            roi = values.new_zeros(m * s, values.shape[-1]).index_add_(0, segment * s + slot, values)
            roi = roi.view(m, s, -1) / views[seen_index].view(m, 1, 1).to(values.dtype)
            out = self.dynamic_conv(query[seen_index], roi)
        else:
            out = self._attend(query[seen_index], pos[seen_index], values, segment, slot)
        return update.index_copy(0, seen_index, out), seen

    # --- forward ----------------------------------------------------------------------
    def forward(self, query: Tensor, positions: Tensor,
                footprint_features: Union[Tensor, Gathered]) -> tuple[Tensor, Tensor]:
        """Update the queries from their footprint features.

        Args:
            query: (B, Q, C) query features.
            positions: (B, Q, 2) normalised query positions (for the positional encoding;
                pass them detached if no gradient should reach them).
            footprint_features: (B, Q, S, C) dense samples from a map, or a
                :class:`Gathered` with ``num_queries_per_sample == Q`` of pairs from views.

        Returns:
            (B, Q, C) updated queries (unseen ones unchanged) and (B, Q) bool ``seen``.
        """
        b, q, c = query.shape
        pos = self.pos_embed(positions.to(query.dtype))
        if isinstance(footprint_features, Gathered):
            seen = footprint_features.keys_per_query().view(b, q) > 0
            if not bool(seen.any()):  # nothing to read: skip the whole layer
                return query, seen
        else:
            if footprint_features.shape[:2] != (b, q) or footprint_features.shape[2] != self.num_samples:
                raise ValueError(f"footprint features must be (B, Q, {self.num_samples}, C) = "
                                 f"({b}, {q}, {self.num_samples}, {c}), got "
                                 f"{tuple(footprint_features.shape)}")
            seen = torch.ones(b, q, dtype=torch.bool, device=query.device)

        qk = query + pos
        attn, _ = self.self_attn(qk, qk, query, need_weights=False)
        x = self.norm1(query + self.dropout(attn))

        flat_x, flat_pos = x.reshape(b * q, c), pos.reshape(b * q, c)
        if isinstance(footprint_features, Gathered):
            update, _ = self._update_pairs(flat_x, flat_pos, footprint_features)
        else:
            update = self._update_dense(flat_x, flat_pos,
                                        footprint_features.reshape(b * q, self.num_samples, -1))
        x = self.norm2(x + self.dropout(update.view(b, q, c)))
        x = self.norm3(x + self.dropout(self.ffn(x)))
        # Unseen queries keep their input exactly (they still served as keys above).
        return torch.where(seen.unsqueeze(-1), x, query), seen
