"""Global dense spreading for the dual-stream encoder: how one stream's features reach
every position of the other beyond the sampled correspondences (DeepInteraction++).

- :class:`RaySpreading`: for calibrated cameras, BEV samples along each image column's
  ray attend to that column and are splatted back onto the BEV map, averaged over the
  views that see a cell (:func:`bilinear_splat`).
- :class:`PooledSpreading`: otherwise, every query attends to a short pooled summary of
  the other stream.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .correspondence import RayLayout
from .segment_attention import position_mlp
from .streams import StreamFeatures

__all__ = ["RaySpreading", "PooledSpreading", "bilinear_splat"]


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
