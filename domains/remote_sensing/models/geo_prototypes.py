"""Geo-context prototype learning (SkySense Sec. 3.3).

A bank of K prototypes for each of R geographic regions (a regular latitude/longitude
grid: ``lat_bins x lon_bins`` cells; the paper uses about 4096 regions x 100 prototypes).
During pre-training the fused features of a sample are assigned to *its region's*
prototypes by Sinkhorn-Knopp (every prototype gets a share, so none dies) and those
prototypes move towards the features assigned to them by an exponential moving average;
no gradient flows into the bank. At use time the fused feature of every position attends
to its region's prototypes and the attended context is concatenated to it (D -> 2D), so
a downstream head sees what is typical of the place (e.g. the land-cover classes of the
region). The paper gives no code for this part; this is our reading of its description.

Distributed training: the per-region sums that drive the EMA are all-reduced over ranks,
so every rank keeps the same bank. That all-reduce is dense, R x K x D floats per update
(tiny for our sizes; 4096 x 100 x 1024 floats = 1.6 GB at paper scale, where one would
reduce only the regions present in the global batch).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.alignment import sinkhorn_knopp
from interlace.core.alignment.distributed import all_reduce_sum
from interlace.core.engine.registry import MODELS

__all__ = ["GeoContextPrototypes"]


@MODELS.register_module()
class GeoContextPrototypes(nn.Module):
    """Per-region prototype bank with Sinkhorn-EMA updates and prototype attention.

    Args:
        embed_dims: D, the fused feature size.
        lat_bins, lon_bins: the region grid (R = lat_bins * lon_bins equal-angle cells).
        num_prototypes: K per region.
        momentum: EMA momentum of the prototypes (``p <- m p + (1 - m) mean``).
        epsilon, sinkhorn_iterations: Sinkhorn-Knopp settings (SwAV: 0.05, 3).
        min_mass: prototypes whose assigned mass in a batch is below this are left as
            they are (no evidence to move them).

    Attributes:
        bank: (R, K, D) buffer of unit-norm prototypes (saved, never trained by gradient).
    """

    def __init__(self, embed_dims: int, lat_bins: int = 4, lon_bins: int = 8,
                 num_prototypes: int = 16, momentum: float = 0.99, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, min_mass: float = 1e-3) -> None:
        super().__init__()
        self.embed_dims, self.lat_bins, self.lon_bins = embed_dims, lat_bins, lon_bins
        self.num_prototypes = num_prototypes
        self.momentum, self.epsilon = momentum, epsilon
        self.sinkhorn_iterations, self.min_mass = sinkhorn_iterations, min_mass
        bank = F.normalize(torch.randn(lat_bins * lon_bins, num_prototypes, embed_dims), dim=-1)
        self.register_buffer("bank", bank)
        # The reading of the bank is learned; the bank itself only follows the features.
        self.query = nn.Linear(embed_dims, embed_dims)
        self.key = nn.Linear(embed_dims, embed_dims)
        self.value = nn.Linear(embed_dims, embed_dims)
        self.out_channels = 2 * embed_dims

    @property
    def num_regions(self) -> int:
        """R."""
        return self.lat_bins * self.lon_bins

    def region_index(self, latlon: Tensor) -> Tensor:
        """(B, 2) latitude, longitude in degrees -> (B,) region index in 0..R-1.

        Row = latitude band from the south pole (90 N falls in the last band), column =
        longitude band from 180 W (longitudes wrap: 180 E is 180 W).
        """
        lat, lon = latlon[:, 0].double(), latlon[:, 1].double()
        row = ((lat + 90.0) / 180.0 * self.lat_bins).floor().long().clamp(0, self.lat_bins - 1)
        col = (torch.remainder(lon + 180.0, 360.0) / 360.0 * self.lon_bins).floor().long()
        return row * self.lon_bins + col.clamp(0, self.lon_bins - 1)

    @staticmethod
    def _positions(features: Tensor) -> Tensor:
        """(B, D, h, w) -> (B, h*w, D)."""
        return features.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def update(self, features: Tensor, latlon: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        """EMA-update the prototypes of the regions in the batch; returns their indices.

        Args:
            features: (B, D, h, w) fused features (detached here).
            latlon: (B, 2) degrees.
            valid: (B, h, w) bool positions to use (e.g. where any observation exists);
                None = all.

        Returns:
            (B,) the region index of every sample.
        """
        regions = self.region_index(latlon)
        points = F.normalize(self._positions(features.detach()).float(), dim=-1)  # (B, N, D)
        keep = (valid.flatten(1).bool() if valid is not None
                else points.new_ones(points.shape[:2], dtype=torch.bool))
        sums = torch.zeros_like(self.bank)
        mass = self.bank.new_zeros(self.bank.shape[:2])
        for region in regions.unique().tolist():
            rows = points[(regions == region)][keep[regions == region]]  # (n, D)
            if rows.shape[0] == 0:
                continue
            prototypes = self.bank[region]
            # Local Sinkhorn: ranks hold different regions, so no cross-rank sums here.
            codes = sinkhorn_knopp(rows @ prototypes.T, self.epsilon, self.sinkhorn_iterations,
                                   distributed=False)  # (n, K), rows sum to 1
            sums[region] += codes.T @ rows
            mass[region] += codes.sum(dim=0)
        all_reduce_sum(sums)
        all_reduce_sum(mass)
        moved = mass > self.min_mass  # (R, K)
        means = F.normalize(sums / mass.clamp_min(self.min_mass).unsqueeze(-1), dim=-1)
        updated = F.normalize(self.momentum * self.bank + (1.0 - self.momentum) * means, dim=-1)
        self.bank.copy_(torch.where(moved.unsqueeze(-1), updated, self.bank))
        return regions

    def forward(self, features: Tensor, latlon: Tensor) -> Tensor:
        """Attend from every position to its region's prototypes; concatenate the result.

        Args:
            features: (B, D, h, w) fused features.
            latlon: (B, 2) degrees.

        Returns:
            (B, 2D, h, w): ``[features, context]``, context = attention over the K
            prototypes of the sample's region.
        """
        batch, dims, height, width = features.shape
        prototypes = self.bank[self.region_index(latlon)].to(features.dtype)  # (B, K, D)
        queries = self.query(self._positions(features))  # (B, N, D)
        context = F.scaled_dot_product_attention(queries, self.key(prototypes),
                                                 self.value(prototypes))  # (B, N, D)
        context = context.transpose(1, 2).reshape(batch, dims, height, width)
        return torch.cat([features, context], dim=1)
