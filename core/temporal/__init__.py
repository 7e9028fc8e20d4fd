"""Factorized spatio-temporal encoder (SkySense): per-date spatial encoders, temporal fusion.

* :class:`DayOfYearEncoding` — learned table of 366 days + padding (:mod:`.day_of_year`);
* :class:`TemporalFusionTransformer` — per-position token sequence -> fused vector through
  a learned extra token, with key-padding masks (:mod:`.temporal_fusion`);
* :class:`FactorizedSpatioTemporalEncoder` — per-stream spatial backbones on every date,
  a common grid, then the temporal transformer (:mod:`.factorized_encoder`).

Importing this package registers ``FactorizedSpatioTemporalEncoder`` in the ``interlace``
MODELS registry. Nothing here knows about satellites: streams are named by configs.
"""
from .day_of_year import DAYS_PER_YEAR, PADDING_DAY, DayOfYearEncoding
from .factorized_encoder import (FactorizedSpatioTemporalEncoder, TemporalEncoderOutput,
                                 pool_valid_mask, resample_to_grid)
from .temporal_fusion import TemporalEncoderLayer, TemporalFusionTransformer

__all__ = [
    "DAYS_PER_YEAR", "PADDING_DAY", "DayOfYearEncoding", "TemporalEncoderLayer",
    "TemporalFusionTransformer", "FactorizedSpatioTemporalEncoder", "TemporalEncoderOutput",
    "pool_valid_mask", "resample_to_grid",
]
