"""Factorized spatio-temporal encoder (SkySense Sec. 3.1): space first, then time.

Every date of every stream (modality) is encoded on its own by that stream's spatial
backbone (time folded into the batch), the per-date feature maps are resampled to one
common grid, and each grid position becomes a sequence of tokens: an optional token of a
single-date high-resolution image, then T tokens per stream. A learned day-of-year
encoding and a learned stream embedding are added to every token, and a
:class:`TemporalFusionTransformer` fuses the sequence into one vector per position.

Factorizing keeps the cost linear in the number of dates for the (expensive) spatial
part, and the temporal part sees every observation of a position at once, whatever the
stream. Observations that must not count are masked per position:

* padding dates (``day_of_year == 0``: series of unequal length in one batch);
* invalid pixels (clouds, nodata): the pixel mask is pooled to the grid and a date is
  masked at a cell where too few of its pixels are valid (``min_valid_fraction``);
* absent streams (per-sample ``present`` flags; SkySense++ zero-fills and flags them).

The streams must be co-registered: each map covers the same ground extent, so resampling
to the common grid is their whole correspondence (the identity case of
``interlace.core.interaction.GridCorrespondence``); warping rasters onto one grid is the
data pipeline's job.

Cost: the spatial part runs ``B * T_s`` images per stream; the temporal part runs
``B * h * w`` sequences of ``1 + [1 high-res] + sum_s T_s`` tokens (see
:mod:`.temporal_fusion` for its memory, and ``chunk_size`` / ``checkpoint_chunks``).

The module knows nothing about satellites: streams are named by the caller's config.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .day_of_year import DayOfYearEncoding
from .temporal_fusion import TemporalFusionTransformer

__all__ = ["FactorizedSpatioTemporalEncoder", "TemporalEncoderOutput", "pool_valid_mask",
           "resample_to_grid"]


class TemporalEncoderOutput(NamedTuple):
    """What :class:`FactorizedSpatioTemporalEncoder` returns (unpacks like a tuple)."""

    fused: Tensor  # (B, D, h, w): the extra token's output per grid position
    stream_features: dict[str, Tensor]  # name -> (B, T, D, h, w) per-date features on the grid
    stream_valid: dict[str, Tensor]  # name -> (B, T, h, w) bool: the token was attended to
    high_res_features: Optional[Tensor]  # (B, D, h, w), or None without a high-res stream
    high_res_valid: Optional[Tensor]  # (B,) bool, or None


def _build(module: dict | nn.Module) -> nn.Module:
    return MODELS.build(module) if isinstance(module, dict) else module


def resample_to_grid(features: Tensor, grid: tuple[int, int]) -> Tensor:
    """Bring (N, D, h', w') maps to (N, D, h, w): average-pool a finer map (every pixel
    counts, as for a high-resolution image), bilinearly interpolate a coarser one."""
    if tuple(features.shape[-2:]) == tuple(grid):
        return features
    if features.shape[-2] >= grid[0] and features.shape[-1] >= grid[1]:
        return F.adaptive_avg_pool2d(features, grid)
    return F.interpolate(features, size=grid, mode="bilinear", align_corners=False)


def pool_valid_mask(valid: Tensor, grid: tuple[int, int],
                    min_valid_fraction: float = 0.0) -> Tensor:
    """Pixel validity (..., H, W) bool -> grid validity (..., h, w) bool.

    A cell is valid where the fraction of its valid pixels exceeds `min_valid_fraction`
    (0 = any valid pixel); the fraction is an adaptive average over the cell's pixels.
    """
    lead = valid.shape[:-2]
    fraction = F.adaptive_avg_pool2d(valid.reshape(-1, 1, *valid.shape[-2:]).float(), grid)
    return (fraction > min_valid_fraction).reshape(*lead, *grid)


@MODELS.register_module()
class FactorizedSpatioTemporalEncoder(nn.Module):
    """Per-date spatial backbones per stream, then per-position temporal fusion.

    Args:
        backbones: stream name -> backbone config or module, e.g.
            ``dict(optical=dict(type='ConvSpatialEncoder', in_channels=10), sar=dict(...))``.
            A backbone maps (N, C, H, W) to (N, C', h', w') and exposes ``out_channels``
            (C'). The order of the names fixes the token order.
        embed_dims: D, the token size (each backbone is projected to it by a 1x1 conv).
        num_layers, num_heads, ffn_ratio, dropout: the temporal transformer.
        grid_size: (h, w) (or an int) of the common grid; else see `grid_stride`.
        grid_stride: input pixels per grid cell of the first stream given; if neither is
            set, the grid is the first stream's feature map size.
        high_res_backbone: optional backbone of a single-date high-resolution image, whose
            map is pooled to the grid and adds one token per position.
        min_valid_fraction: see :func:`pool_valid_mask`.
        chunk_size, checkpoint_chunks: memory controls of the temporal transformer
            (:class:`TemporalFusionTransformer`), in sequences (grid positions x batch).
        day_of_year_init: start of the learned day-of-year table, ``'normal'`` or
            ``'harmonic'`` (see :class:`DayOfYearEncoding`).
    """

    def __init__(self, backbones: Mapping[str, dict | nn.Module], embed_dims: int = 64,
                 num_layers: int = 2, num_heads: int = 4, ffn_ratio: float = 4.0,
                 dropout: float = 0.0, grid_size: Optional[int | Sequence[int]] = None,
                 grid_stride: Optional[int] = None,
                 high_res_backbone: Optional[dict | nn.Module] = None,
                 min_valid_fraction: float = 0.0, chunk_size: Optional[int] = None,
                 checkpoint_chunks: bool = False, day_of_year_init: str = "normal") -> None:
        super().__init__()
        if not backbones:
            raise ValueError("FactorizedSpatioTemporalEncoder needs at least one backbone")
        self.embed_dims = embed_dims
        self.stream_names = list(backbones)
        self.backbones = nn.ModuleDict({k: _build(v) for k, v in backbones.items()})
        self.projections = nn.ModuleDict({k: self._projection(b)
                                          for k, b in self.backbones.items()})
        self.high_res_backbone = (_build(high_res_backbone) if high_res_backbone is not None
                                  else None)
        self.high_res_projection = (self._projection(self.high_res_backbone)
                                    if self.high_res_backbone is not None else None)
        if isinstance(grid_size, int):
            grid_size = (grid_size, grid_size)
        self.grid_size = tuple(grid_size) if grid_size is not None else None
        self.grid_stride = grid_stride
        self.min_valid_fraction = min_valid_fraction
        self.day_of_year = DayOfYearEncoding(embed_dims, day_of_year_init)
        # One learned embedding per stream (last row: the high-res stream) tells the
        # transformer which sensor a token comes from (SkySense's modality embedding).
        self.stream_embedding = nn.Parameter(torch.zeros(len(self.stream_names) + 1, embed_dims))
        nn.init.trunc_normal_(self.stream_embedding, std=0.02)
        self.fusion = TemporalFusionTransformer(embed_dims, num_layers, num_heads, ffn_ratio,
                                                dropout, chunk_size, checkpoint_chunks)

    def _projection(self, backbone: nn.Module) -> nn.Module:
        channels = getattr(backbone, "out_channels", None)
        if channels is None:
            raise AttributeError(f"backbone {type(backbone).__name__} has no `out_channels`")
        if channels == self.embed_dims:
            return nn.Identity()
        return nn.Conv2d(channels, self.embed_dims, kernel_size=1)

    def _grid(self, series: Mapping[str, Tensor], first_map: tuple[int, int]) -> tuple[int, int]:
        if self.grid_size is not None:
            return self.grid_size
        if self.grid_stride is not None and series:
            height, width = next(iter(series.values())).shape[-2:]
            return height // self.grid_stride, width // self.grid_stride
        return first_map

    def encode_dates(self, name: str, series: Tensor) -> Tensor:
        """Spatial features of every date on its own: (B, T, C, H, W) -> (B, T, D, h', w')."""
        batch, dates = series.shape[:2]
        maps = self.projections[name](self.backbones[name](series.flatten(0, 1)))
        return maps.reshape(batch, dates, *maps.shape[1:])

    def forward(self, series: Mapping[str, Tensor], day_of_year: Mapping[str, Tensor],
                valid: Optional[Mapping[str, Tensor]] = None,
                present: Optional[Mapping[str, Tensor]] = None,
                high_res: Optional[Tensor] = None,
                high_res_present: Optional[Tensor] = None) -> TemporalEncoderOutput:
        """Encode the time series of the streams given (a subset of the configured ones).

        Args:
            series: name -> (B, T_s, C_s, H, W) images (zero-filled where absent).
            day_of_year: name -> (B, T_s) int, 1..366, 0 for padding dates.
            valid: name -> (B, T_s, H, W) bool, False for cloudy / nodata / padding pixels;
                missing = all valid.
            present: name -> (B,) bool per-sample stream flags; missing = present.
            high_res: (B, C, H_h, W_h) single-date image, if a high-res backbone is set.
            high_res_present: (B,) bool; missing = present.

        Returns:
            :class:`TemporalEncoderOutput`; ``fused`` is (B, D, h, w).
        """
        unknown = set(series) - set(self.stream_names)
        if unknown:
            raise KeyError(f"unknown streams {sorted(unknown)}; configured: {self.stream_names}")
        names = [n for n in self.stream_names if n in series]
        if not names and high_res is None:
            raise ValueError("no stream given to the encoder")
        valid, present = valid or {}, present or {}
        dates_maps = {name: self.encode_dates(name, series[name]) for name in names}
        first = dates_maps[names[0]].shape[-2:] if names else None
        grid = self._grid(series, tuple(first) if first is not None else None)
        tokens, attend, stream_features, stream_valid = [], [], {}, {}

        high_res_features = high_res_valid = None
        if high_res is not None:
            if self.high_res_backbone is None:
                raise ValueError("high_res given but the encoder has no high_res_backbone")
            if grid is None:
                raise ValueError("a grid_size is needed when only the high-res stream is given")
            hr = resample_to_grid(self.high_res_projection(self.high_res_backbone(high_res)), grid)
            batch = hr.shape[0]
            high_res_valid = (high_res_present.bool() if high_res_present is not None
                              else hr.new_ones(batch, dtype=torch.bool))
            high_res_features = hr
            tokens.append((hr + self.stream_embedding[-1].view(1, -1, 1, 1)).unsqueeze(1))
            attend.append(high_res_valid.view(batch, 1, 1, 1).expand(batch, 1, *grid))

        for name in names:
            maps = dates_maps[name]
            batch, dates = maps.shape[:2]
            maps = resample_to_grid(maps.flatten(0, 1), grid).reshape(batch, dates, -1, *grid)
            doy = day_of_year[name]
            ok = (doy > 0).view(batch, dates, 1, 1).expand(batch, dates, *grid)
            if name in valid:
                ok = ok & pool_valid_mask(valid[name].bool(), grid, self.min_valid_fraction)
            if name in present:
                ok = ok & present[name].bool().view(batch, 1, 1, 1)
            index = self.stream_names.index(name)
            encoding = self.day_of_year(doy) + self.stream_embedding[index]  # (B, T, D)
            tokens.append(maps + encoding[..., None, None])
            attend.append(ok)
            stream_features[name], stream_valid[name] = maps, ok

        token_maps = torch.cat(tokens, dim=1)  # (B, S, D, h, w)
        batch, length, dims = token_maps.shape[:3]
        # Fold the grid positions into the batch: one sequence of S tokens per position.
        sequences = token_maps.permute(0, 3, 4, 1, 2).reshape(-1, length, dims)
        attend_flat = torch.cat(attend, dim=1).permute(0, 2, 3, 1).reshape(-1, length)
        fused = self.fusion(sequences, padding_mask=~attend_flat)
        fused = fused.reshape(batch, *grid, dims).permute(0, 3, 1, 2).contiguous()
        return TemporalEncoderOutput(fused, stream_features, stream_valid, high_res_features,
                                     high_res_valid)
