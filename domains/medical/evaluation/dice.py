"""Dice for binary chest X-ray segmentation: MONAI's ``DiceMetric`` behind mmengine.

MGCA reports Dice averaged over all images of the test split (SIIM, with 1 / 10 / 100 %
of the training data; published figures in docs/methods/mgca.md). Averaging over *all*
images needs a value for the images whose ground truth is empty (most SIIM images have no
pneumothorax): MONAI's ``ignore_empty=False`` gives such an image Dice 1 when the
prediction is empty too and 0 when anything is predicted, so false alarms on healthy
images cost as much as missed findings. That is the headline ``dice``.
``dice_nonempty_gt`` is the mean over images whose ground truth is not empty (the value
MONAI's default ``ignore_empty=True`` gives), which measures delineation alone.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from monai.metrics import DiceMetric

from interlace.core.engine.registry import METRICS

__all__ = ["CxrDiceMetric"]


@METRICS.register_module()
class CxrDiceMetric(BaseMetric):
    """Mean Dice of thresholded foreground probabilities against binary masks.

    Args:
        threshold: a probability above it is foreground.
        pred_key: the prediction's key in each model output ((1, H, W) probabilities,
            ``CxrSegmenter``'s ``seg_prob``).
        gt_key: the ground truth's key ((1, H, W) in {0, 1}, same frame as `pred_key`).
        collect_device, prefix: as for mmengine's ``BaseMetric``.

    Per batch, MONAI's ``DiceMetric`` (``ignore_empty=False``, no reduction) gives one
    value per image; those values (not the masks) are kept, so the result gathers
    cheaply across ranks and the mean is over images, not over batches.

    Reports ``dice`` (all images; empty ground truth scored as described in the module
    docstring), ``dice_nonempty_gt`` (NaN if every mask is empty), ``num_images`` and
    ``num_empty_gt``.
    """

    default_prefix: Optional[str] = "seg"

    def __init__(self, threshold: float = 0.5, pred_key: str = "seg_prob",
                 gt_key: str = "gt_seg_map", collect_device: str = "cpu",
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.threshold, self.pred_key, self.gt_key = threshold, pred_key, gt_key
        self._dice = DiceMetric(include_background=True, reduction="none",
                                ignore_empty=False)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Score one batch of model outputs (each holding `pred_key` and `gt_key`)."""
        if not data_samples:
            return
        missing = [k for k in (self.pred_key, self.gt_key) if k not in data_samples[0]]
        if missing:
            raise KeyError(f"CxrDiceMetric: model outputs have no {missing}; they hold "
                           f"{sorted(data_samples[0])}")
        preds = torch.stack([torch.as_tensor(s[self.pred_key]).float().cpu()
                             for s in data_samples]) > self.threshold
        gts = torch.stack([torch.as_tensor(s[self.gt_key]).float().cpu()
                           for s in data_samples]) > 0.5
        if preds.shape != gts.shape or preds.ndim != 4:
            raise ValueError(f"CxrDiceMetric: predictions {tuple(preds.shape)} and ground "
                             f"truth {tuple(gts.shape)} must both be (B, 1, H, W)")
        values = self._dice(preds.float(), gts.float()).flatten()
        self._dice.reset()  # per-image values live in self.results (gathered by mmengine)
        empty = ~gts.flatten(1).any(dim=1)
        self.results.extend(dict(dice=float(v), empty_gt=bool(e))
                            for v, e in zip(values.tolist(), empty.tolist()))

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Means over all images and over images with a non-empty ground truth."""
        if not results:
            raise ValueError("CxrDiceMetric: no images were scored")
        values = [r["dice"] for r in results]
        nonempty = [r["dice"] for r in results if not r["empty_gt"]]
        return dict(dice=sum(values) / len(values),
                    dice_nonempty_gt=sum(nonempty) / len(nonempty) if nonempty else math.nan,
                    num_images=float(len(values)),
                    num_empty_gt=float(len(values) - len(nonempty)))
