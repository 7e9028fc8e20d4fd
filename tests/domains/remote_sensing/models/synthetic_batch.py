"""Random batches in the remote sensing batch contract, and tiny SkySense configs."""
from __future__ import annotations

import torch
from mmengine.structures import BaseDataElement


def make_batch(batch: int = 2, size: int = 16, s2_dates: int = 4, s1_dates: int = 3,
               num_classes: int = 4, high_res: bool = False, seed: int = 0) -> dict:
    """A collated batch as the dataset + collate deliver it (see TimeSeriesDataPreprocessor)."""
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "s2": torch.randn(batch, s2_dates, 10, size, size, generator=g),
        "s2_doy": torch.randint(1, 367, (batch, s2_dates), generator=g),
        "s2_valid": torch.ones(batch, s2_dates, size, size, dtype=torch.bool),
        "s1": torch.randn(batch, s1_dates, 2, size, size, generator=g),
        "s1_doy": torch.randint(1, 367, (batch, s1_dates), generator=g),
        "s1_valid": torch.ones(batch, s1_dates, size, size, dtype=torch.bool),
        "modality_flags": torch.tensor([[True, True, high_res]] * batch),
        "latlon": torch.tensor([[48.0 + i, 11.0 - 30 * i] for i in range(batch)]),
    }
    if high_res:
        inputs["hr"] = torch.randn(batch, 3, 2 * size, 2 * size, generator=g)
    # A learnable label: class from the mean of the first S2 band (so training can fit it).
    bands = inputs["s2"][:, :, 0].mean(1)
    labels = torch.bucketize(bands, torch.tensor([-0.5, 0.0, 0.5])).clamp(max=num_classes - 1)
    samples = []
    for i in range(batch):
        sample = BaseDataElement(metainfo=dict(tile="T32UPU", window=(0, 0, size, size)))
        sample.gt_sem_seg = labels[i]
        sample.gt_label = int(labels[i].flatten().mode().values)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def encoder_config(embed_dims: int = 16, stride: int = 2, high_res: bool = False) -> dict:
    cfg = dict(type="FactorizedSpatioTemporalEncoder",
               backbones=dict(optical=dict(type="ConvSpatialEncoder", in_channels=10,
                                           out_channels=embed_dims, stride=stride),
                              sar=dict(type="ConvSpatialEncoder", in_channels=2,
                                       out_channels=embed_dims, stride=stride)),
               embed_dims=embed_dims, num_layers=1, num_heads=2)
    if high_res:
        cfg["high_res_backbone"] = dict(type="ConvSpatialEncoder", in_channels=3,
                                        out_channels=embed_dims, stride=4)
    return cfg
