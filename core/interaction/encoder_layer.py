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

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.ops.sampled_attention import MultiScaleSampledAttention

from .correspondence import Correspondence, RayLayout
from .segment_attention import SampledCrossAttention, keep_samples, position_mlp
from .streams import StreamFeatures

__all__ = ["RaySpreading", "PooledSpreading", "StreamBranch", "DualStreamEncoderLayer",
           "bilinear_splat"]

# Default of ``DualStreamEncoderLayer.forward(ray_layout=...)``: ask the correspondence.
ASK_CORRESPONDENCE = "ask"


class _HeadAttention(nn.Module):
    """Plain multi-head attention (q/k/v/out projections + SDPA) with a boolean mask."""

    def __init__(self, embed_dims: int, num_heads: int) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.k_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                mask: Optional[Tensor] = None) -> Tensor:
        """query (B, Q, C), key/value (B, K, C), mask (B, Q or 1, K) bool with True =
        attend (every row needs one True) -> (B, Q, C)."""
        batch, heads = query.shape[0], self.num_heads

        def split(t: Tensor) -> Tensor:
            return t.view(batch, t.shape[1], heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q_proj(query)), split(self.k_proj(key)), split(self.v_proj(value)),
            attn_mask=None if mask is None else mask.unsqueeze(1))
        return self.out_proj(out.transpose(1, 2).reshape(batch, query.shape[1], -1))


def bilinear_splat(values: Tensor, points: Tensor, valid: Tensor, height: int, width: int,
                   min_weight: float = 1e-3) -> Tensor:
    """Scatter point values onto a map with bilinear weights and normalise per cell.

    Args:
        values: (B, P, C); points: (B, P, 2) normalised (x, y) in [0, 1] (pixel (i, j)'s
            centre at ((j + 0.5) / W, (i + 0.5) / H), grid_sample's align_corners=False);
        valid: (B, P) bool, invalid points are ignored (their coordinates may be garbage).
        min_weight: the accumulated weight is clamped below at this value before
            dividing, so a cell touched only by a far corner fades out smoothly instead of
            getting the full value.

    Returns:
        (B, C, H, W): per cell sum(w * value) / max(sum(w), min_weight); 0 where no
        point lands.
    """
    batch, num_points, channels = values.shape
    dtype = values.dtype
    points = torch.where(valid.unsqueeze(-1), points, torch.full_like(points, 0.5))
    px = points[..., 0] * width - 0.5
    py = points[..., 1] * height - 0.5
    x0, y0 = torch.floor(px), torch.floor(py)
    fx, fy = px - x0, py - y0
    x0, y0 = x0.long(), y0.long()
    base = torch.arange(batch, device=values.device).view(batch, 1) * (height * width)
    # Accumulate in float32: under bf16 autocast the weights are float32 and many rays
    # may add into one cell.
    work = torch.promote_types(dtype, torch.float32)
    acc = values.new_zeros(batch * height * width, channels, dtype=work)
    total = values.new_zeros(batch * height * width, dtype=work)
    values = values.to(work)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = valid & (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            weight = (wx * wy).masked_fill(~inside, 0.0).to(work)  # (B, P)
            flat = (base + yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).flatten()
            acc = acc.index_add(0, flat, (values * weight.unsqueeze(-1)).flatten(0, 1))
            total = total.index_add(0, flat, weight.flatten())
    out = (acc / total.clamp_min(min_weight).unsqueeze(-1)).to(dtype)
    return out.view(batch, height, width, channels).permute(0, 3, 1, 2)


@MODELS.register_module()
class RaySpreading(nn.Module):
    """Global dense spreading along camera columns (DeepInteraction++): stream A's
    level-0 map (BEV) is sampled at D points along the ray of every column of every view;
    those samples attend to the column's features of stream B; the results are splatted
    back onto A's level 0 and averaged over the samples and views that hit each cell.

    Args:
        embed_dims: C of both streams.
        num_heads: attention heads.
        min_weight: see :func:`bilinear_splat`.
    """

    def __init__(self, embed_dims: int = 128, num_heads: int = 8, min_weight: float = 1e-3) -> None:
        super().__init__()
        self.attention = _HeadAttention(embed_dims, num_heads)
        # Without positions the column would be an unordered set and the ray samples
        # indistinguishable by depth; both get an MLP encoding of their normalised index.
        self.depth_pos = position_mlp(1, embed_dims)
        self.row_pos = position_mlp(1, embed_dims)
        self.min_weight = min_weight

    def forward(self, layout: RayLayout, a: StreamFeatures, b: StreamFeatures,
                sample_mask: Optional[Tensor] = None) -> Tensor:
        """Args:
            layout: a_points (B, V, W, D, 2) on A's level 0, valid (B, V, W, D); W is the
                width of B's level ``layout.level``.
            a: map stream with one view, levels[0] (B, C, H0, W0).
            b: map stream with V views, levels[layout.level] (B * V, C, Hb, W).
            sample_mask: (B,) bool, samples allowed to spread (both streams present).

        Returns:
            (B, C, H0, W0) update of A's level-0 map; zero in cells no valid sample hits.
        """
        if not (a.is_map and b.is_map) or a.num_views != 1:
            raise ValueError("RaySpreading needs map streams and a single-view stream A")
        a0, columns = a.levels[0], b.levels[layout.level]
        batch, channels, height, width = a0.shape
        _, views, num_columns, depth, _ = layout.a_points.shape
        if (b.num_views, columns.shape[-1]) != (views, num_columns):
            raise ValueError(f"ray layout is for {views} views x {num_columns} columns, stream "
                             f"B level {layout.level} has {b.num_views} views x "
                             f"{columns.shape[-1]} columns")
        rows = columns.shape[-2]
        valid = layout.valid.to(torch.bool).reshape(batch, -1)
        if sample_mask is not None:
            valid = valid & sample_mask.view(batch, 1)
        points = layout.a_points.to(a0.dtype).reshape(batch, -1, 2)
        # Garbage coordinates of invalid samples (behind the camera: inf/NaN) would poison
        # grid_sample's output; park them at the centre, they are dropped at the splat.
        points = torch.where(valid.unsqueeze(-1), points, torch.full_like(points, 0.5))
        sampled = F.grid_sample(a0, points.unsqueeze(2) * 2 - 1, mode="bilinear",
                                padding_mode="zeros", align_corners=False)  # (B, C, VWD, 1)
        queries = sampled.squeeze(-1).transpose(1, 2).reshape(-1, depth, channels)
        depth_index = (torch.arange(depth, device=a0.device, dtype=a0.dtype) + 0.5) / depth
        queries = queries + self.depth_pos(depth_index.unsqueeze(-1))
        # (B*V, C, Hb, W) -> (B*V*W, Hb, C): one key sequence per column.
        keys = columns.permute(0, 3, 2, 1).reshape(-1, rows, channels)
        row_index = (torch.arange(rows, device=a0.device, dtype=a0.dtype) + 0.5) / rows
        out = self.attention(queries, keys + self.row_pos(row_index.unsqueeze(-1)), keys)
        return bilinear_splat(out.reshape(batch, -1, channels), points, valid, height, width,
                              self.min_weight)


@MODELS.register_module()
class PooledSpreading(nn.Module):
    """Global spreading without geometry: the source stream is pooled to a short summary
    and every query cross-attends to it.

    Summary of a map source: the finest level adaptive-average-pooled to s x s tokens per
    view (s = round(sqrt(num_summary))) plus a learned embedding of the s x s cell.
    Summary of a token source: the masked mean plus ``num_summary`` learned seeds that
    attention-pool the (non-padding) tokens.

    Args:
        embed_dims: C; num_heads: heads; num_summary: summary size (see above);
        source: 'map' or 'tokens', the kind of the stream being summarised.
    """

    def __init__(self, embed_dims: int = 128, num_heads: int = 8, num_summary: int = 16,
                 source: str = "map") -> None:
        super().__init__()
        if source not in ("map", "tokens"):
            raise ValueError(f"source must be 'map' or 'tokens', got {source!r}")
        self.source = source
        if source == "map":
            self.side = max(1, int(round(math.sqrt(num_summary))))
            self.cell_embed = nn.Parameter(torch.randn(self.side * self.side, embed_dims) * 0.02)
        else:
            self.seeds = nn.Parameter(torch.randn(num_summary, embed_dims) * 0.02)
            self.pool = _HeadAttention(embed_dims, num_heads)
        self.attention = _HeadAttention(embed_dims, num_heads)

    def summarise(self, source: StreamFeatures) -> Tensor:
        """(B, S, C) summary of ``source`` (S = V * s * s for maps, num_summary + 1 for
        tokens)."""
        if source.is_map:
            if self.source != "map":
                raise ValueError("PooledSpreading(source='tokens') got a map stream")
            finest = max(source.levels, key=lambda lvl: lvl.shape[-2] * lvl.shape[-1])
            pooled = F.adaptive_avg_pool2d(finest, self.side).flatten(2).transpose(1, 2)
            pooled = pooled + self.cell_embed
            return pooled.reshape(source.batch_size, -1, pooled.shape[-1])
        if self.source != "tokens":
            raise ValueError("PooledSpreading(source='map') got a token stream")
        tokens = source.tokens
        keep = (torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
                if source.padding_mask is None else ~source.padding_mask.to(torch.bool))
        mean = (tokens * keep.unsqueeze(-1)).sum(1, keepdim=True)
        mean = mean / keep.sum(1).clamp_min(1).view(-1, 1, 1)
        # A sample with only padding (absent stream) would give an all-masked softmax
        # (NaN); let it attend everywhere, its summary is never used.
        keep = keep | ~keep.any(1, keepdim=True)
        seeds = self.seeds.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        pooled = self.pool(seeds, tokens, tokens, keep.unsqueeze(1))
        return torch.cat([mean, pooled], dim=1)

    def forward(self, query: Tensor, source: StreamFeatures,
                sample_mask: Optional[Tensor] = None) -> Tensor:
        """query (B, N, C) of the receiving stream, ``source`` the other stream,
        sample_mask (B,) bool samples allowed to receive -> (B, N, C) update (zeros where
        sample_mask is False)."""
        summary = self.summarise(source)
        out = self.attention(query, summary, summary)
        if sample_mask is not None:
            out = out * sample_mask.view(-1, 1, 1).to(out.dtype)
        return out


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
