"""Multi-scale sampled (deformable) attention in pure PyTorch.

Each query reads a handful of bilinearly interpolated points per feature level and
mixes them with learned weights, as in Deformable DETR's MSDeformAttn. The sampling is
done with :func:`torch.nn.functional.grid_sample`, so it runs on CPU and GPU with no
compiled extension and is differentiable w.r.t. values, locations and weights.

Coordinate convention: a location (x, y) in [0, 1] spans the whole map, 0 being the
left/top *edge* and 1 the right/bottom edge, so pixel ``(i, j)`` has its centre at
``((j + 0.5) / W, (i + 0.5) / H)``. Samples falling outside the map read zeros.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = [
    "MultiScaleSampledAttention",
    "multi_scale_sampled_attention",
    "multi_scale_sampled_attention_reference",
]

ShapesLike = Union[Tensor, Sequence[Sequence[int]]]


def _level_shapes(spatial_shapes: ShapesLike) -> list[tuple[int, int]]:
    # Plain ints: the per-level split needs Python sizes, and converting once avoids a
    # device sync per level when the shapes live on the GPU.
    if isinstance(spatial_shapes, Tensor):
        spatial_shapes = spatial_shapes.tolist()
    return [(int(h), int(w)) for h, w in spatial_shapes]


def _check_inputs(value: Tensor, shapes: list[tuple[int, int]], sampling_locations: Tensor,
                  attention_weights: Tensor) -> None:
    batch, length, heads, _ = value.shape
    if length != sum(h * w for h, w in shapes):
        raise ValueError(f"value has {length} positions but spatial_shapes {shapes} "
                         f"sum to {sum(h * w for h, w in shapes)}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError("sampling_locations must be (B, Q, num_heads, L, P, 2), got "
                         f"{tuple(sampling_locations.shape)}")
    b, q, m, levels, points, _ = sampling_locations.shape
    if (b, m, levels) != (batch, heads, len(shapes)):
        raise ValueError(f"sampling_locations {tuple(sampling_locations.shape)} does not match "
                         f"value {tuple(value.shape)} and {len(shapes)} levels")
    if tuple(attention_weights.shape) != (b, q, m, levels, points):
        raise ValueError(f"attention_weights must be {(b, q, m, levels, points)}, got "
                         f"{tuple(attention_weights.shape)}")


def multi_scale_sampled_attention(value: Tensor, spatial_shapes: ShapesLike,
                                  sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Weighted sum of bilinear samples from several feature levels.

    Args:
        value: (B, S, num_heads, head_dims), the levels flattened row-major and
            concatenated, S = sum(H_l * W_l).
        spatial_shapes: (L, 2) long tensor (or list) of (H_l, W_l).
        sampling_locations: (B, Q, num_heads, L, P, 2), normalised (x, y); 0 and 1 are
            the map's outer edges, anything outside reads zeros.
        attention_weights: (B, Q, num_heads, L, P), typically softmax-ed over L * P.

    Returns:
        (B, Q, num_heads * head_dims).
    """
    shapes = _level_shapes(spatial_shapes)
    _check_inputs(value, shapes, sampling_locations, attention_weights)
    batch, _, heads, dims = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape

    per_level = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample's [-1, 1] with align_corners=False puts -1/+1 on the outer pixel
    # edges, which is exactly the [0, 1] edge convention above.
    grids = sampling_locations * 2 - 1
    sampled = []
    for level, (height, width) in enumerate(shapes):
        # Heads fold into the batch so every head samples its own slice of channels.
        value_l = per_level[level].permute(0, 2, 3, 1).reshape(batch * heads, dims, height, width)
        grid_l = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # (B*M, D, Q, P)
    stacked = torch.stack(sampled, dim=-2).flatten(-2)  # (B*M, D, Q, L*P)
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (stacked * weights).sum(-1)  # (B*M, D, Q)
    return out.view(batch, heads * dims, queries).transpose(1, 2).contiguous()


def multi_scale_sampled_attention_reference(value: Tensor, spatial_shapes: ShapesLike,
                                            sampling_locations: Tensor,
                                            attention_weights: Tensor) -> Tensor:
    """Slow explicit-interpolation twin of :func:`multi_scale_sampled_attention`.

    Written without ``grid_sample`` (four-neighbour gather with integer indexing, zero
    weight for neighbours outside the map) so the two can check each other, values and
    gradients alike. Same arguments and shapes; returns (B, Q, num_heads * head_dims).
    """
    shapes = _level_shapes(spatial_shapes)
    _check_inputs(value, shapes, sampling_locations, attention_weights)
    batch, _, heads, dims = value.shape
    _, queries, _, _, points, _ = sampling_locations.shape
    device = value.device
    batch_idx = torch.arange(batch, device=device).view(batch, 1, 1)
    head_idx = torch.arange(heads, device=device).view(1, 1, heads)

    out = value.new_zeros(batch, queries, heads, dims)
    start = 0
    for level, (height, width) in enumerate(shapes):
        value_l = value[:, start:start + height * width]  # (B, H*W, M, D)
        start += height * width
        for point in range(points):
            loc = sampling_locations[:, :, :, level, point]  # (B, Q, M, 2)
            # Continuous pixel coordinates whose integers are pixel centres.
            px = loc[..., 0] * width - 0.5
            py = loc[..., 1] * height - 0.5
            x0 = torch.floor(px)
            y0 = torch.floor(py)
            fx = px - x0
            fy = py - y0
            x0 = x0.long()
            y0 = y0.long()
            sample = torch.zeros_like(out)
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    xi = x0 + dx
                    yi = y0 + dy
                    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
                    flat = yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)
                    corner = value_l[batch_idx, flat, head_idx]  # (B, Q, M, D)
                    sample = sample + (wx * wy * inside.to(value.dtype)).unsqueeze(-1) * corner
            out = out + attention_weights[:, :, :, level, point].unsqueeze(-1) * sample
    return out.reshape(batch, queries, heads * dims)


@MODELS.register_module()
class MultiScaleSampledAttention(nn.Module):
    """Multi-scale deformable attention (Deformable DETR) over grid_sample.

    Each head predicts ``num_points`` offsets per level around a reference point and a
    softmax weight per (level, point); the sampled projected values are mixed and
    projected back, then added to ``identity``.

    Args:
        embed_dims: channels C of query, value and output.
        num_heads: attention heads; ``value_proj_ratio * embed_dims`` must divide by it.
        num_levels: feature levels L in ``value``.
        num_points: sampling points P per head and level.
        dropout: dropout on the attention output before the residual.
        batch_first: tensors are (B, N, C) when True, (N, B, C) otherwise.
        value_proj_ratio: width of the projected value relative to ``embed_dims``.
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 4,
                 num_points: int = 4, dropout: float = 0.0, batch_first: bool = True,
                 value_proj_ratio: float = 1.0) -> None:
        super().__init__()
        value_dims = int(embed_dims * value_proj_ratio)
        if value_dims % num_heads != 0:
            raise ValueError(f"value width {value_dims} (embed_dims * value_proj_ratio) must be "
                             f"divisible by num_heads={num_heads}")
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.batch_first = batch_first
        self.value_dims = value_dims
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, value_dims)
        self.output_proj = nn.Linear(value_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.init_weights()

    def init_weights(self) -> None:
        """Deformable DETR's initialisation: offsets start on a ring of directions.

        Head h looks along angle 2*pi*h/num_heads (scaled so the larger component is
        1 pixel), point p at distance p + 1, so at step 0 the heads already cover
        different directions and ranges instead of all sampling the reference point.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        ring = torch.stack([angles.cos(), angles.sin()], dim=-1)
        ring = ring / ring.abs().max(dim=-1, keepdim=True).values
        ring = ring.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        ring = ring * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(ring.flatten())
        # Zero logits: uniform weights over levels and points at the start.
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: Tensor, value: Optional[Tensor], reference_points: Tensor,
                spatial_shapes: ShapesLike, key_padding_mask: Optional[Tensor] = None,
                identity: Optional[Tensor] = None, query_pos: Optional[Tensor] = None) -> Tensor:
        """Attend from each query to sampled points of the multi-level ``value``.

        Args:
            query: (B, Q, C) ((Q, B, C) if not ``batch_first``).
            value: (B, S, C) with S = sum(H_l * W_l); None means self-attention on ``query``.
            reference_points: (B, Q, L, 2) or (B, Q, 2) normalised (x, y) in [0, 1];
                the latter is shared by all levels.
            spatial_shapes: (L, 2) of (H_l, W_l).
            key_padding_mask: (B, S) bool, True marks a value position to ignore.
            identity: (B, Q, C) residual; defaults to ``query`` (before ``query_pos``).
            query_pos: (B, Q, C) positional encoding added to the query.

        Returns:
            (B, Q, C) ((Q, B, C) if not ``batch_first``): identity + dropout(attention).
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.transpose(0, 1)
            value = value.transpose(0, 1)
        shapes = _level_shapes(spatial_shapes)
        if len(shapes) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} levels, got spatial_shapes {shapes}")
        batch, queries, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        value = value.view(batch, value.shape[1], heads, self.value_dims // heads)

        offsets = self.sampling_offsets(query).view(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, queries, heads, levels, points)

        if reference_points.dim() == 3:
            reference_points = reference_points.unsqueeze(2).expand(-1, -1, levels, -1)
        if reference_points.shape[-1] != 2:
            raise ValueError("reference_points must end in (x, y), got "
                             f"{tuple(reference_points.shape)}")
        # Offsets are in pixels of each level, so one unit moves one pixel at any scale.
        normaliser = torch.tensor([[w, h] for h, w in shapes], dtype=offsets.dtype,
                                  device=offsets.device)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / normaliser[None, None, None, :, None, :])

        out = multi_scale_sampled_attention(value, shapes, locations, weights)
        out = self.output_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return identity + self.dropout(out)

    def extra_repr(self) -> str:
        return (f"embed_dims={self.embed_dims}, num_heads={self.num_heads}, "
                f"num_levels={self.num_levels}, num_points={self.num_points}")
