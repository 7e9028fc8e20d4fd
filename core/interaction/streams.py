"""The two containers every part of the interaction core speaks: a stream's features
(:class:`StreamFeatures`) and the cross-stream samples a correspondence hands back
(:class:`Gathered`).

A stream is either a set of **maps** (one or more levels, each for V views per sample:
LiDAR BEV levels with V = 1, six camera views with V = 6, a SAR raster) or a sequence of
**tokens** (report words, ViT patches) with a padding mask. Either way the encoder
treats every position as a query; :meth:`StreamFeatures.flatten` gives them in a fixed
order and :meth:`StreamFeatures.unflatten` puts updated queries back.

Query order for maps (per sample): view-major, then level, then row-major position::

    n = v * sum_l(H_l * W_l) + level_start[l] + i * W_l + j

Coordinates: a map position (i, j) has the normalised centre ((j + 0.5) / W_l,
(i + 0.5) / H_l) in [0, 1], the convention of ``interlace.core.ops.sampled_attention``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch
from torch import Tensor

__all__ = ["StreamFeatures", "Gathered"]


@dataclass
class StreamFeatures:
    """One stream's features for a batch of B samples.

    Exactly one of ``levels`` and ``tokens`` is set.

    Attributes:
        levels: maps, each (B * V, C, H_l, W_l); views of one sample are consecutive.
        tokens: (B, N, C) token sequence.
        num_views: V, views per sample (maps only; 1 for a single map).
        padding_mask: tokens only, (B, N) bool, True = padding (ignored as a key, its
            output is left unchanged).
        present: (B,) bool, False for samples that lack this stream entirely (their
            features are ignored by the other stream and passed through unchanged).
    """

    levels: Optional[list[Tensor]] = None
    tokens: Optional[Tensor] = None
    num_views: int = 1
    padding_mask: Optional[Tensor] = None
    present: Optional[Tensor] = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.levels is None) == (self.tokens is None):
            raise ValueError("StreamFeatures needs exactly one of `levels` and `tokens`")
        if self.levels is not None:
            if not self.levels:
                raise ValueError("StreamFeatures.levels is empty")
            channels = {lvl.shape[1] for lvl in self.levels}
            if len(channels) != 1:
                raise ValueError(f"all levels must have the same channels, got {sorted(channels)}")
            if self.levels[0].shape[0] % self.num_views:
                raise ValueError(f"levels hold {self.levels[0].shape[0]} maps, not a multiple of "
                                 f"num_views={self.num_views}")

    # --- shape facts -------------------------------------------------------------------
    @property
    def is_map(self) -> bool:
        return self.levels is not None

    @property
    def batch_size(self) -> int:
        if self.tokens is not None:
            return self.tokens.shape[0]
        return self.levels[0].shape[0] // self.num_views

    @property
    def channels(self) -> int:
        return self.tokens.shape[-1] if self.tokens is not None else self.levels[0].shape[1]

    @property
    def spatial_shapes(self) -> list[tuple[int, int]]:
        """(H_l, W_l) per level; maps only."""
        if self.levels is None:
            raise ValueError("token streams have no spatial shapes")
        return [(int(lvl.shape[-2]), int(lvl.shape[-1])) for lvl in self.levels]

    @property
    def level_start(self) -> list[int]:
        """Offset of each level inside one view's flattened positions."""
        starts, total = [], 0
        for h, w in self.spatial_shapes:
            starts.append(total)
            total += h * w
        return starts

    @property
    def num_queries(self) -> int:
        """Queries per sample (N in ``flatten``'s (B, N, C))."""
        if self.tokens is not None:
            return self.tokens.shape[1]
        return self.num_views * sum(h * w for h, w in self.spatial_shapes)

    @property
    def device(self) -> torch.device:
        return (self.tokens if self.tokens is not None else self.levels[0]).device

    def present_mask(self) -> Tensor:
        """(B,) bool; all True when ``present`` was not given."""
        if self.present is not None:
            return self.present.to(torch.bool)
        return torch.ones(self.batch_size, dtype=torch.bool, device=self.device)

    # --- queries -----------------------------------------------------------------------
    def flatten(self) -> Tensor:
        """All positions as queries: (B, N, C), in the order given in the module docstring."""
        if self.tokens is not None:
            return self.tokens
        b, v = self.batch_size, self.num_views
        per_view = torch.cat([lvl.flatten(2) for lvl in self.levels], dim=2)  # (B*V, C, S)
        return per_view.transpose(1, 2).reshape(b, v * per_view.shape[-1], self.channels)

    def unflatten(self, queries: Tensor) -> "StreamFeatures":
        """A copy with the features replaced by `queries` (B, N, C') from ``flatten`` order.
        The channel count may change (e.g. after a projection)."""
        if self.tokens is not None:
            return replace(self, tokens=queries)
        b, v = self.batch_size, self.num_views
        c = queries.shape[-1]
        per_view = queries.reshape(b * v, -1, c).transpose(1, 2)  # (B*V, C', S)
        levels, start = [], 0
        for h, w in self.spatial_shapes:
            levels.append(per_view[:, :, start:start + h * w].reshape(b * v, c, h, w))
            start += h * w
        return replace(self, levels=levels)

    def query_key_padding(self) -> Optional[Tensor]:
        """(B, N) bool, True where a query is padding (tokens) ; None for maps."""
        return self.padding_mask

    def reference_points(self) -> Tensor:
        """Normalised (x, y) centre of every map query: (N_per_view_all_levels, 2), the
        same for every view and sample (flatten order within one view)."""
        refs = []
        for h, w in self.spatial_shapes:
            ys = (torch.arange(h, device=self.device, dtype=torch.float32) + 0.5) / h
            xs = (torch.arange(w, device=self.device, dtype=torch.float32) + 0.5) / w
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            refs.append(torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2))
        return torch.cat(refs, dim=0)


@dataclass
class Gathered:
    """Features of the *other* stream sampled for each query of one stream, as a flat list
    of valid (query, key) pairs.

    Why pairs and not a dense (B, N, K, C) block with a mask: for LiDAR pillars the number
    of valid keys varies from 0 to 20 points x 6 views; a dense block pads every query
    to the maximum (DeepInteraction groups pillars by key count for this reason). Pairs
    cost memory linear in the valid pairs only. :meth:`to_dense` gives the padded form
    with its validity mask for tests and small problems.

    Attributes:
        values: (P, C) sampled features of the other stream.
        query_index: (P,) long, the flat query each pair belongs to: ``b * N + n`` with
            N = ``num_queries_per_sample``.
        num_queries_per_sample: N of the querying stream.
        batch_size: B.
        key_position: optional (P, D) geometry of each key (e.g. normalised pixel and
            depth, or view id) for a positional encoding; None if the correspondence has
            none (dense token matching).
    """

    values: Tensor
    query_index: Tensor
    num_queries_per_sample: int
    batch_size: int
    key_position: Optional[Tensor] = None

    @property
    def num_pairs(self) -> int:
        return int(self.query_index.numel())

    def keys_per_query(self) -> Tensor:
        """(B, N) long: how many valid keys each query has."""
        counts = torch.zeros(self.batch_size * self.num_queries_per_sample, dtype=torch.long,
                             device=self.query_index.device)
        counts.index_add_(0, self.query_index, torch.ones_like(self.query_index))
        return counts.view(self.batch_size, self.num_queries_per_sample)

    def to_dense(self, max_keys: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Padded form: values (B, N, K, C) and valid (B, N, K) bool, K = max keys of any
        query (or `max_keys`); pairs keep their order within each query."""
        total = self.batch_size * self.num_queries_per_sample
        counts = self.keys_per_query().flatten()
        k = int(counts.max()) if max_keys is None and counts.numel() else int(max_keys or 0)
        order = torch.argsort(self.query_index, stable=True)
        sorted_query = self.query_index[order]
        first = torch.cumsum(counts, 0) - counts
        slot = torch.arange(sorted_query.numel(), device=sorted_query.device) - first[sorted_query]
        keep = slot < k
        dense = self.values.new_zeros(total, max(k, 1), self.values.shape[-1])
        valid = torch.zeros(total, max(k, 1), dtype=torch.bool, device=self.values.device)
        dense[sorted_query[keep], slot[keep]] = self.values[order][keep]
        valid[sorted_query[keep], slot[keep]] = True
        shape = (self.batch_size, self.num_queries_per_sample)
        return dense[:, :k].view(*shape, k, -1), valid[:, :k].view(*shape, k)
