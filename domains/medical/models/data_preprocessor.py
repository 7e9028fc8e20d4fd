"""Batching for image-report pairs: stack the images, keep each sample's text as metadata.

:func:`collate_image_reports` (the dataloader's ``collate_fn``) only groups the samples'
fields into lists; :class:`CxrReportDataPreprocessor` (the model's preprocessor) stacks
the images and hands the rest to the model as per-sample data.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from interlace.core.engine.registry import FUNCTIONS, MODELS

__all__ = ["CxrReportDataPreprocessor", "collate_image_reports"]


@FUNCTIONS.register_module()
def collate_image_reports(samples: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Group B sample dicts into one dict of B-long lists, values untouched.

    mmengine's ``pseudo_collate`` recurses into sequences and rejects samples whose
    ``sentences`` lists differ in length, which reports always do; nothing here needs
    collating below the first level.
    """
    if not samples:
        raise ValueError("collate_image_reports got an empty batch")
    keys = samples[0].keys()
    return {key: [sample[key] for sample in samples] for key in keys}


@MODELS.register_module()
class CxrReportDataPreprocessor(BaseDataPreprocessor):
    """Turn a collated batch into ``dict(inputs, data_samples)`` for :class:`MGCA`.

    Accepts what mmengine's ``pseudo_collate`` makes of :class:`MimicCxrDataset` samples
    (a dict of per-key lists: ``img``, ``report``, ``sentences``, ...) or an already split
    ``dict(inputs=..., data_samples=...)``. Images are normalised by the dataset's
    transforms, so this only stacks them and moves them to the model's device.

    Args:
        image_key: the sample key holding the (C, H, W) image.
    """

    def __init__(self, image_key: str = "img") -> None:
        super().__init__()
        self.image_key = image_key

    def forward(self, data: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        """Returns ``dict(inputs=(B, C, H, W) float tensor, data_samples=B dicts or
        data elements)``; every other key of a sample ends up in its data sample."""
        if "inputs" in data:
            images, samples = data["inputs"], data.get("data_samples")
        else:
            images = data[self.image_key]
            others = {k: v for k, v in data.items() if k != self.image_key}
            size = len(images)
            samples = [{k: v[i] for k, v in others.items()} for i in range(size)]
        if isinstance(images, Sequence):
            images = torch.stack(list(images))
        images = self.cast_data(images.float() if isinstance(images, Tensor) else images)
        return dict(inputs=images, data_samples=samples)
