"""``collate_time_series``: batch chips whose series have different lengths (registered in
FUNCTIONS; configs say ``collate_fn=dict(type="interlace.collate_time_series")``).

Each modality's time axis is padded to the batch maximum (at least 1) with zeros,
day-of-year 0 and valid False, so a model can tell padding from data. The result is
the contract the remote-sensing model's data preprocessor reads::

    inputs = {
        's2': (B, T2, 10, H, W) float32, 's2_doy': (B, T2) int64, 's2_valid': (B, T2, H, W) bool,
        's1': (B, T1, 2, H, W) float32,  's1_doy': (B, T1) int64, 's1_valid': (B, T1, H, W) bool,
        'hr': (B, C, Hh, Wh) float32     (only when some sample has it; zeros elsewhere),
        'modality_flags': (B, 3) bool    (s2, s1, hr present),
        'latlon': (B, 2) float32         (degrees WGS84),
    }
    data_samples = [BaseDataElement(gt_sem_seg=(H, W) int64, metainfo=dict(tile, window,
                    crs, transform, dates=dict(s2=[...], s1=[...]), latlon, img_shape))]
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.structures import BaseDataElement

from interlace.core.engine.registry import FUNCTIONS

__all__ = ["collate_time_series", "pad_time"]


def pad_time(tensors: Sequence[torch.Tensor], length: int, value: float | bool = 0) -> torch.Tensor:
    """Stack (T_i, ...) tensors into (B, length, ...), padding the time axis with `value`."""
    first = tensors[0]
    out = torch.full((len(tensors), length, *first.shape[1:]), value, dtype=first.dtype)
    for i, tensor in enumerate(tensors):
        if tensor.shape[1:] != first.shape[1:]:
            raise ValueError(f"collate_time_series: sample {i} has shape {tuple(tensor.shape)}, "
                             f"sample 0 has {tuple(first.shape)} (besides time); chips of a "
                             "batch must have one size")
        out[i, :tensor.shape[0]] = tensor
    return out


@FUNCTIONS.register_module()
def collate_time_series(batch: Sequence[dict]) -> dict:
    """Collate samples of ``SentinelTimeSeriesDataset`` (see the module docstring)."""
    if not batch:
        raise ValueError("collate_time_series: empty batch")
    inputs: dict[str, torch.Tensor] = {}
    for name in ("s2", "s1"):
        length = max(1, max(sample[name].shape[0] for sample in batch))
        inputs[name] = pad_time([s[name] for s in batch], length, 0.0)
        inputs[f"{name}_doy"] = pad_time([s[f"{name}_doy"] for s in batch], length, 0)
        inputs[f"{name}_valid"] = pad_time([s[f"{name}_valid"] for s in batch], length, False)
    with_hr = [s for s in batch if s.get("hr") is not None]
    if with_hr:
        shape = with_hr[0]["hr"].shape
        hr = torch.zeros((len(batch), *shape), dtype=torch.float32)
        for i, sample in enumerate(batch):
            if sample.get("hr") is not None:
                if sample["hr"].shape != shape:
                    raise ValueError(f"collate_time_series: hr of sample {i} is "
                                     f"{tuple(sample['hr'].shape)}, expected {tuple(shape)}")
                hr[i] = sample["hr"]
        inputs["hr"] = hr
    inputs["modality_flags"] = torch.stack([s["modality_flags"] for s in batch]).bool()
    inputs["latlon"] = torch.stack([torch.as_tensor(s["latlon"], dtype=torch.float32)
                                    for s in batch])
    data_samples = []
    for sample in batch:
        label = sample["label"]
        metainfo = dict(tile=sample["tile"], window=tuple(sample["window"]), crs=sample["crs"],
                        transform=tuple(sample["transform"]),
                        dates=dict(s2=list(sample["s2_dates"]), s1=list(sample["s1_dates"])),
                        latlon=tuple(float(v) for v in sample["latlon"]),
                        img_shape=tuple(label.shape))
        data_samples.append(BaseDataElement(metainfo=metainfo, gt_sem_seg=label.long()))
    return dict(inputs=inputs, data_samples=data_samples)
