"""Batch -> model inputs for SkySense models: stack, pad, clean and rename the streams.

The batch contract (what the dataset + collate of :mod:`interlace.domains.remote_sensing.data`
deliver; per-sample lists of the same keys are accepted too and stacked here)::

    inputs = {
        's2':       (B, T2, 10, H, W) float32, normalised; bands B02, B03, B04, B05, B06,
                    B07, B08, B8A, B11, B12,
        's2_doy':   (B, T2) int64, day of year 1..366, 0 = padding date,
        's2_valid': (B, T2, H, W) bool, False = cloud / nodata / padding,
        's1':       (B, T1, 2, H, W) float32 (VV, VH), 's1_doy', 's1_valid' as for s2,
        'hr':       (B, C, Hh, Wh) float32 high-resolution image, or absent,
        'modality_flags': (B, 3) bool, is (s2, s1, hr) present in each sample,
        'latlon':   (B, 2) float, degrees (latitude, longitude),
    }
    data_samples = [BaseDataElement(gt_sem_seg=(H, W) int64 (255 = ignore) or
                                    gt_label=int, metainfo=dict(crs, transform, dates,
                                    tile, window)), ...]

The model receives ``inputs`` as a dict of the generic names of
:class:`~interlace.core.temporal.FactorizedSpatioTemporalEncoder`::

    dict(series={stream: (B, T, C, H, W)}, day_of_year={stream: (B, T)},
         valid={stream: (B, T, H, W)}, present={stream: (B,)}, high_res=(B, C, Hh, Wh) or
         None, high_res_present=(B,) or None, latlon=(B, 2) or None)

with stream names from `streams` (default ``optical`` <- s2, ``sar`` <- s1).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from interlace.core.engine.registry import MODELS

__all__ = ["TimeSeriesDataPreprocessor"]


def _pad_dates(tensors: Sequence[Tensor], fill: Any) -> Tensor:
    """Stack per-sample (T_i, ...) tensors into (B, max T, ...), padding with `fill`."""
    longest = max(t.shape[0] for t in tensors)
    padded = []
    for t in tensors:
        extra = longest - t.shape[0]
        if extra:
            t = torch.cat([t, t.new_full((extra, *t.shape[1:]), fill)], dim=0)
        padded.append(t)
    return torch.stack(padded)


@MODELS.register_module()
class TimeSeriesDataPreprocessor(BaseDataPreprocessor):
    """Turn a collated Sentinel time-series batch into the SkySense models' inputs.

    Non-finite band values are zeroed and their pixels marked invalid: a NaN that reached
    a masked token would still poison the attention (0 x NaN = NaN). Absent streams (flag
    False) are zero-filled, as SkySense++ does.

    Args:
        streams: encoder stream name -> batch key of its series (``doy`` and ``valid``
            are ``<key>_doy`` / ``<key>_valid``).
        high_res_key: batch key of the high-resolution image; None ignores it (for an
            encoder without a high-res backbone).
        flag_keys: the batch keys that the columns of ``modality_flags`` refer to.
    """

    def __init__(self, streams: Optional[Mapping[str, str]] = None,
                 high_res_key: Optional[str] = "hr",
                 flag_keys: Sequence[str] = ("s2", "s1", "hr")) -> None:
        super().__init__()
        self.streams = dict(streams or dict(optical="s2", sar="s1"))
        self.high_res_key = high_res_key
        self.flag_keys = tuple(flag_keys)

    def _flag(self, flags: Optional[Tensor], key: str, batch: int, device) -> Tensor:
        if flags is None or key not in self.flag_keys:
            return torch.ones(batch, dtype=torch.bool, device=device)
        return flags[:, self.flag_keys.index(key)].bool()

    @staticmethod
    def _stacked(value: Any, fill: Any = 0) -> Any:
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], Tensor):
            if value[0].dim() >= 1 and len({v.shape for v in value}) > 1:
                return _pad_dates(value, fill)
            return torch.stack(list(value))
        return value

    def forward(self, data: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        """Returns ``dict(inputs=<the dict in the module docstring>, data_samples=...)``."""
        raw = data["inputs"]
        if isinstance(raw, (list, tuple)):  # a list of per-sample input dicts
            raw = {k: [sample[k] for sample in raw] for k in raw[0]}
        raw = {k: self._stacked(v, fill=False if k.endswith("_valid") else 0)
               for k, v in raw.items()}
        raw = self.cast_data(raw)
        flags = raw.get("modality_flags")
        series, day_of_year, valid, present = {}, {}, {}, {}
        for name, key in self.streams.items():
            if key not in raw:
                continue
            images = raw[key].float()
            batch, dates = images.shape[:2]
            finite = torch.isfinite(images)
            images = torch.where(finite, images, torch.zeros_like(images))
            mask = raw.get(f"{key}_valid")
            mask = (torch.ones(batch, dates, *images.shape[-2:], dtype=torch.bool,
                               device=images.device) if mask is None else mask.bool())
            mask = mask & finite.all(dim=2)
            flag = self._flag(flags, key, batch, images.device)
            doy = raw.get(f"{key}_doy")
            if doy is None:
                raise KeyError(f"batch has '{key}' but no '{key}_doy' (day of year per date)")
            series[name] = images * flag.view(batch, 1, 1, 1, 1)
            day_of_year[name], valid[name], present[name] = doy.long(), mask, flag
        high_res = raw.get(self.high_res_key) if self.high_res_key is not None else None
        high_res_present = None
        if high_res is not None:
            high_res = high_res.float()
            high_res = torch.where(torch.isfinite(high_res), high_res, torch.zeros_like(high_res))
            high_res_present = self._flag(flags, self.high_res_key, high_res.shape[0],
                                          high_res.device)
            high_res = high_res * high_res_present.view(-1, 1, 1, 1)
        latlon = raw.get("latlon")
        inputs = dict(series=series, day_of_year=day_of_year, valid=valid, present=present,
                      high_res=high_res, high_res_present=high_res_present,
                      latlon=latlon.float() if latlon is not None else None)
        return dict(inputs=inputs, data_samples=data.get("data_samples"))
