"""One layer of the dual-stream representational interaction encoder (DeepInteraction++)
and its branches.

Each stream keeps its own features; per stream a layer runs (all from the layer's input
``x`` of that stream, so the branches are parallel as in DeepInteraction)::

    intra  = intra-modal attention of x on its own stream
             (sampled multi-scale attention per view for maps, self-attention for tokens)
    cross  = SampledCrossAttention(x, correspondence's samples of the other stream)
    spread = global dense spreading from the other stream
             (RaySpreading along camera columns for A when the correspondence has a ray
             layout, else PooledSpreading through a short summary of the other stream)
    h      = LayerNorm1(x + intra)
    h      = h + scale * (cross + spread)          # scale: learnable, per channel
    out    = LayerNorm2(h + FFN(h))

Missing streams (``StreamFeatures.present``): where the *other* stream is absent, cross
and spread are exactly zero, so ``out`` is the intra-only path; where *this* stream is
absent, ``out = x`` (features pass through unchanged). Token padding queries keep ``x``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.ops.sampled_attention import MultiScaleSampledAttention

from .correspondence import Correspondence, RayLayout
from .segment_attention import SampledCrossAttention, keep_samples
from .spreading import PooledSpreading, RaySpreading
from .streams import StreamFeatures

__all__ = ["StreamBranch", "DualStreamEncoderLayer"]

# Default of ``DualStreamEncoderLayer.forward(ray_layout=...)``: ask the correspondence.
ASK_CORRESPONDENCE = "ask"


class StreamBranch(nn.Module):
    """One stream's half of a :class:`DualStreamEncoderLayer`: intra-modal attention,
    cross-modal sampled attention, the learnable cross scale, norms and FFN.

    Args:
        num_levels: map levels of this stream; 0 for a token stream.
        key_pos_dims: D of the key positions in the pairs this stream receives.
        cross_scale_init: initial value of the per-channel cross-branch scale.
        Others as in :class:`DualStreamEncoderLayer`.
    """

    def __init__(self, embed_dims: int, num_heads: int, ffn_dims: int, num_levels: int,
                 num_points: int, dropout: float, key_pos_dims: Optional[int],
                 cross_scale_init: float) -> None:
        super().__init__()
        self.num_levels = num_levels
        if num_levels > 0:
            self.intra = MultiScaleSampledAttention(embed_dims, num_heads, num_levels,
                                                    num_points, dropout=dropout)
            # Tells the offset/weight predictors which level a query sits on.
            self.level_embed = nn.Parameter(torch.randn(num_levels, embed_dims) * 0.02)
        else:
            self.intra = nn.MultiheadAttention(embed_dims, num_heads, dropout=dropout,
                                               batch_first=True)
        self.cross = SampledCrossAttention(embed_dims, num_heads, key_pos_dims, dropout=dropout)
        self.scale = nn.Parameter(torch.full((embed_dims,), float(cross_scale_init)))
        self.norm1 = nn.LayerNorm(embed_dims)
        self.ffn = nn.Sequential(nn.Linear(embed_dims, ffn_dims), nn.ReLU(inplace=True),
                                 nn.Dropout(dropout), nn.Linear(ffn_dims, embed_dims),
                                 nn.Dropout(dropout))
        self.norm2 = nn.LayerNorm(embed_dims)

    def intra_residual(self, feats: StreamFeatures, x: Tensor) -> Tensor:
        """x + intra-modal attention of x: (B, N, C) -> (B, N, C)."""
        if feats.is_map != (self.num_levels > 0):
            raise ValueError(f"branch built for a {'map' if self.num_levels else 'token'} "
                             f"stream got a {'map' if feats.is_map else 'token'} stream")
        if not feats.is_map:
            ignore = feats.padding_mask
            if ignore is not None:
                # An all-padding row (absent sample) would make the softmax NaN; it is
                # passed through unchanged later, so let it attend everywhere.
                ignore = ignore.to(torch.bool)
                ignore = ignore & (~ignore).any(1, keepdim=True)
            out, _ = self.intra(x, x, x, key_padding_mask=ignore, need_weights=False)
            return x + out
        if len(feats.levels) != self.num_levels:
            raise ValueError(f"branch built for {self.num_levels} levels got {len(feats.levels)}")
        # Views fold into the batch: each view attends over its own levels only.
        batch_views = feats.batch_size * feats.num_views
        per_view = x.reshape(batch_views, -1, x.shape[-1])
        shapes = feats.spatial_shapes
        refs = feats.reference_points().to(x.dtype).unsqueeze(0).expand(batch_views, -1, -1)
        level_pos = torch.repeat_interleave(
            self.level_embed.to(x.dtype), torch.tensor([h * w for h, w in shapes],
                                                       device=x.device), dim=0)
        out = self.intra(per_view, per_view, refs, shapes, identity=per_view,
                         query_pos=level_pos.unsqueeze(0))
        return out.reshape(x.shape)

    def combine(self, feats: StreamFeatures, x: Tensor, intra_residual: Tensor,
                interaction: Optional[Tensor]) -> Tensor:
        """LN1(x + intra) + scale * interaction, then LN2(h + FFN(h)); absent samples and
        padding queries keep x. All (B, N, C)."""
        h = self.norm1(intra_residual)
        if interaction is not None:
            h = h + self.scale * interaction
        out = self.norm2(h + self.ffn(h))
        keep_input = ~feats.present_mask().view(-1, 1, 1)
        if feats.padding_mask is not None:
            keep_input = keep_input | feats.padding_mask.to(torch.bool).unsqueeze(-1)
        return torch.where(keep_input, x, out)


@MODELS.register_module()
class DualStreamEncoderLayer(nn.Module):
    """One representational-interaction layer for streams A and B (module docstring).

    Args:
        embed_dims: C of both streams.
        num_heads: attention heads in every branch.
        ffn_dims: hidden width of each stream's FFN.
        num_levels_a / num_levels_b: map levels of each stream; 0 for a token stream.
        num_points: sampling points per head and level of the intra-modal attention.
        dropout: dropout on every branch output and in the FFN.
        spreading: 'auto' (ray spreading into A when the correspondence gives a ray
            layout, pooled otherwise; builds both modules when A and B are maps, so one of
            them is idle per batch: pick 'ray' or 'pooled' for DDP without
            find_unused_parameters), 'ray' (a ray layout is required), 'pooled', or None
            (no spreading). B always receives pooled spreading from A when spreading is
            on: image columns already get their BEV context through the cross branch, the
            summary adds scene-wide context cheaply.
        num_summary: summary size of pooled spreading.
        key_pos_dims_a / key_pos_dims_b: D of ``key_position`` in the pairs gathered for
            A (``gather_b_for_a``) / for B; None ignores key positions.
        cross_scale_init: initial per-channel scale of the cross branch (0 starts every
            stream on its single-modal path).
        ray_min_weight: see :func:`bilinear_splat`.
    """

    def __init__(self, embed_dims: int = 128, num_heads: int = 8, ffn_dims: int = 512,
                 num_levels_a: int = 1, num_levels_b: int = 1, num_points: int = 4,
                 dropout: float = 0.0, spreading: Optional[str] = "auto", num_summary: int = 16,
                 key_pos_dims_a: Optional[int] = None, key_pos_dims_b: Optional[int] = None,
                 cross_scale_init: float = 0.1, ray_min_weight: float = 1e-3) -> None:
        super().__init__()
        if spreading not in ("auto", "ray", "pooled", None):
            raise ValueError("spreading must be 'auto', 'ray', 'pooled' or None, "
                             f"got {spreading!r}")
        both_maps = num_levels_a > 0 and num_levels_b > 0
        if spreading == "ray" and not both_maps:
            raise ValueError("spreading='ray' needs two map streams (num_levels_a/b > 0)")
        self.embed_dims, self.spreading = embed_dims, spreading
        common = dict(embed_dims=embed_dims, num_heads=num_heads, ffn_dims=ffn_dims,
                      num_points=num_points, dropout=dropout, cross_scale_init=cross_scale_init)
        self.branch_a = StreamBranch(num_levels=num_levels_a, key_pos_dims=key_pos_dims_a, **common)
        self.branch_b = StreamBranch(num_levels=num_levels_b, key_pos_dims=key_pos_dims_b, **common)
        use_ray = spreading == "ray" or (spreading == "auto" and both_maps)
        use_pooled_a = spreading in ("auto", "pooled")
        self.ray_a = RaySpreading(embed_dims, num_heads, ray_min_weight) if use_ray else None
        self.pooled_a = (PooledSpreading(embed_dims, num_heads, num_summary,
                                         "map" if num_levels_b > 0 else "tokens")
                         if use_pooled_a else None)
        self.pooled_b = (PooledSpreading(embed_dims, num_heads, num_summary,
                                         "map" if num_levels_a > 0 else "tokens")
                         if spreading is not None else None)
        self.dropout = nn.Dropout(dropout)

    @property
    def uses_ray_layout(self) -> bool:
        """Whether forward asks the correspondence for a ray layout."""
        return self.ray_a is not None

    def forward(self, a: StreamFeatures, b: StreamFeatures, correspondence: Correspondence,
                ray_layout: Optional[RayLayout] | str = ASK_CORRESPONDENCE
                ) -> tuple[StreamFeatures, StreamFeatures]:
        """Args:
            a, b: the streams (maps: levels (B * V, C, H_l, W_l); tokens: (B, N, C) with
                padding_mask (B, N)); ``present`` (B,) per stream.
            correspondence: gives the pairs (recomputed here from the current features)
                and the ray layout.
            ray_layout: a precomputed layout (or None for none); by default the layer asks
                ``correspondence.ray_layout(a, b)`` when it uses one.

        Returns:
            (a_out, b_out): same structure as the inputs (levels, views, padding, present).
        """
        for name, feats in (("a", a), ("b", b)):
            if feats.channels != self.embed_dims:
                raise ValueError(f"stream {name} has {feats.channels} channels, the layer "
                                 f"expects embed_dims={self.embed_dims}")
        xa, xb = a.flatten(), b.flatten()
        both = a.present_mask() & b.present_mask()
        # Cross branch: pairs of samples lacking either stream are dropped, so those
        # samples get an exact-zero cross update.
        cross_a = self.branch_a.cross(xa, keep_samples(correspondence.gather_b_for_a(a, b), both))
        cross_b = self.branch_b.cross(xb, keep_samples(correspondence.gather_a_for_b(a, b), both))
        if self.spreading is not None:
            layout = None
            if self.ray_a is not None:
                layout = (correspondence.ray_layout(a, b)
                          if isinstance(ray_layout, str) else ray_layout)
                if layout is None and self.pooled_a is None:
                    raise ValueError("spreading='ray' but the correspondence gives no ray layout")
            if layout is not None:
                splat = self.ray_a(layout, a, b, both)  # (B, C, H0, W0) on A's level 0
                level0 = splat.flatten(2).transpose(1, 2)
                # Only A's level 0 receives the splat; later levels get zeros.
                spread_a = torch.cat([level0, xa.new_zeros(xa.shape[0], xa.shape[1]
                                                           - level0.shape[1], xa.shape[2])], 1)
            else:
                spread_a = self.pooled_a(xa, b, both)
            cross_a = cross_a + self.dropout(spread_a)
            cross_b = cross_b + self.dropout(self.pooled_b(xb, a, both))
        out_a = self.branch_a.combine(a, xa, self.branch_a.intra_residual(a, xa), cross_a)
        out_b = self.branch_b.combine(b, xb, self.branch_b.intra_residual(b, xb), cross_b)
        return a.unflatten(out_a), b.unflatten(out_b)
