"""Small pieces shared by the concrete correspondences: bilinear sampling of maps at
normalised points, which samples take part, and assembling :class:`Gathered` pairs.

Kept out of :mod:`.correspondence` (the abstract contract) so that the contract stays
free of implementation detail.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .streams import Gathered, StreamFeatures

__all__ = ["sample_maps", "inside_unit", "both_present", "assemble_gathered", "require_maps"]


def sample_maps(maps: Tensor, points: Tensor) -> Tensor:
    """Bilinear samples of maps at normalised points.

    Args:
        maps: (N, C, H, W) feature maps.
        points: (N, P, 2) normalised (x, y) in [0, 1], pixel (i, j) centred at
            ((j + 0.5) / W, (i + 0.5) / H) (``grid_sample`` with ``align_corners=False``).

    Returns:
        (N, P, C) sampled features.
    """
    grid = (points.to(maps.dtype) * 2.0 - 1.0).unsqueeze(1)          # (N, 1, P, 2)
    # "border" padding: callers drop points outside [0, 1) themselves, so padding only
    # matters in the outermost half pixel, where the edge value is a better guess than a
    # blend with zeros.
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border",
                        align_corners=False)                           # (N, C, 1, P)
    return out[:, :, 0].transpose(1, 2)


def inside_unit(points: Tensor) -> Tensor:
    """(..., 2) normalised points -> (...) bool, True inside [0, 1) x [0, 1)."""
    return ((points >= 0) & (points < 1)).all(dim=-1)


def both_present(a: StreamFeatures, b: StreamFeatures) -> Tensor:
    """(B,) bool: samples where both streams are present (pairs exist only there)."""
    pa, pb = a.present_mask(), b.present_mask().to(a.device)
    if pa.shape != pb.shape:
        raise ValueError(f"streams disagree on the batch size: {tuple(pa.shape)} vs "
                         f"{tuple(pb.shape)}")
    return pa & pb


def require_maps(stream: StreamFeatures, name: str, num_views: Optional[int] = None) -> None:
    """Raise a clear error unless `stream` is a map stream (with `num_views` views)."""
    if not stream.is_map:
        raise ValueError(f"{name} must be a map stream (levels), got tokens")
    if num_views is not None and stream.num_views != num_views:
        raise ValueError(f"{name} must have num_views={num_views}, got {stream.num_views}")


def assemble_gathered(values: Sequence[Tensor], index: Sequence[Tensor],
                      positions: Optional[Sequence[Tensor]], *, channels: int,
                      num_queries: int, batch_size: int, like: Tensor,
                      position_dim: int = 0) -> Gathered:
    """Concatenate per-chunk pairs into one :class:`Gathered`.

    Args:
        values: chunks of (P_k, C) values.
        index: chunks of (P_k,) long flat query indices.
        positions: chunks of (P_k, D) key positions, or None for no key positions.
        channels: C, used when there are no chunks (an empty result keeps its width).
        num_queries: N of the querying stream.
        batch_size: B.
        like: a tensor giving dtype and device for empty results.
        position_dim: D, for an empty ``key_position``.
    """
    if values:
        vals = torch.cat(list(values), 0)
        idx = torch.cat(list(index), 0).long()
        pos = torch.cat(list(positions), 0) if positions is not None else None
    else:
        vals = like.new_zeros(0, channels)
        idx = torch.zeros(0, dtype=torch.long, device=like.device)
        pos = like.new_zeros(0, position_dim) if positions is not None else None
    return Gathered(values=vals, query_index=idx, num_queries_per_sample=num_queries,
                    batch_size=batch_size, key_position=pos)
