"""Segmentation and change metrics from an accumulated confusion matrix.

``SegmentationMetric`` (registered in METRICS) adds one (C, C) confusion matrix per
batch (rows = ground truth, columns = prediction; pixels equal to ``ignore_index`` in
the ground truth are left out) and reduces once at the end, so every pixel counts the
same whichever batch it came in:

    IoU_c = TP_c / (TP_c + FP_c + FN_c)     F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)
    mIoU, mF1 = means over classes present in the ground truth or the prediction
    OA = trace / total

``ChangeF1`` is the binary case (class 1 = change) reported as precision / recall / F1 of
the change class, as on OSCD and LEVIR-CD.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from interlace.core.engine.registry import METRICS

__all__ = ["confusion_matrix", "segmentation_scores", "SegmentationMetric", "ChangeF1"]


def confusion_matrix(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor,
                     num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows = gt, cols = pred.

    Raises:
        ValueError: shapes differ, or a prediction / label outside [0, num_classes)."""
    pred = torch.as_tensor(pred).reshape(-1).long()
    gt = torch.as_tensor(gt).reshape(-1).long()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction has {pred.numel()} pixels, ground truth {gt.numel()}")
    keep = gt != ignore_index
    pred, gt = pred[keep], gt[keep]
    for name, values in (("ground truth", gt), ("prediction", pred)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds class {int(values.max())} outside "
                             f"[0, {num_classes}) (ignore_index={ignore_index})")
    counts = torch.bincount(gt * num_classes + pred, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def segmentation_scores(matrix: np.ndarray) -> dict[str, Any]:
    """Per-class IoU / F1 (NaN for classes absent from both gt and prediction), their
    means over the other classes, and overall accuracy."""
    matrix = matrix.astype(np.float64)
    tp = np.diag(matrix)
    fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
    present = (tp + fp + fn) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / (tp + fp + fn), np.nan)
        f1 = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = matrix.sum()
    return dict(iou=iou, f1=f1, miou=float(np.nanmean(iou)) if present.any() else float("nan"),
                mf1=float(np.nanmean(f1)) if present.any() else float("nan"),
                oa=float(tp.sum() / total) if total else float("nan"))


def _as_map(value: Any) -> torch.Tensor:
    """A label map from a tensor, an array, a PixelData-like (``.data``) or a dict."""
    if isinstance(value, dict):
        value = value.get("data", value.get("sem_seg"))
    if hasattr(value, "data") and not isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.data
    tensor = torch.as_tensor(value)
    return tensor[0] if tensor.ndim == 3 and tensor.shape[0] == 1 else tensor


def _get(sample: Any, key: str) -> Any:
    if isinstance(sample, dict):
        return sample.get(key)
    return getattr(sample, key, None) if key in sample else None


@METRICS.register_module()
class SegmentationMetric(BaseMetric):
    """mIoU, per-class IoU, macro F1 and overall accuracy (see the module docstring).

    ``process`` reads ``pred_sem_seg`` from each output sample and ``gt_sem_seg`` from the
    output sample, else from ``data_batch['data_samples']`` (both (H, W); a leading 1 and
    PixelData's ``.data`` are accepted).

    Args:
        num_classes: class count; default ``len(dataset_meta['classes'])``.
        ignore_index: ground-truth value left out (255).
        prefix: metric name prefix (mmengine), e.g. ``'val'``.
    """

    default_prefix = "seg"

    def __init__(self, num_classes: Optional[int] = None, ignore_index: int = 255,
                 class_names: Optional[Sequence[str]] = None, collect_device: str = "cpu",
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self._num_classes, self.ignore_index, self._names = num_classes, ignore_index, class_names

    @property
    def class_names(self) -> list[str]:
        if self._names is not None:
            return list(self._names)
        if self.dataset_meta and "classes" in self.dataset_meta:
            return list(self.dataset_meta["classes"])
        return [str(i) for i in range(self.num_classes)]

    @property
    def num_classes(self) -> int:
        if self._num_classes is not None:
            return self._num_classes
        if self._names is not None:
            return len(self._names)
        if self.dataset_meta and "classes" in self.dataset_meta:
            return len(self.dataset_meta["classes"])
        raise ValueError("SegmentationMetric: give num_classes or a dataset with "
                         "metainfo['classes']")

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        inputs = (data_batch or {}).get("data_samples") if isinstance(data_batch, dict) else None
        for i, sample in enumerate(data_samples):
            pred = _get(sample, "pred_sem_seg")
            gt = _get(sample, "gt_sem_seg")
            if gt is None and inputs is not None:
                gt = _get(inputs[i], "gt_sem_seg")
            if pred is None or gt is None:
                raise KeyError(f"SegmentationMetric: sample {i} lacks pred_sem_seg or gt_sem_seg")
            self.results.append(confusion_matrix(_as_map(pred).cpu(), _as_map(gt).cpu(),
                                                 self.num_classes, self.ignore_index))

    def compute_metrics(self, results: list) -> dict[str, float]:
        matrix = np.sum(results, axis=0) if results else np.zeros((self.num_classes,) * 2)
        scores = segmentation_scores(matrix)
        metrics = dict(mIoU=scores["miou"], mF1=scores["mf1"], OA=scores["oa"])
        for name, iou, f1 in zip(self.class_names, scores["iou"], scores["f1"]):
            metrics[f"IoU.{name}"] = float(iou)
            metrics[f"F1.{name}"] = float(f1)
        return metrics


@METRICS.register_module()
class ChangeF1(SegmentationMetric):
    """Precision, recall and F1 of the change class (1) of a binary change map."""

    default_prefix = "change"

    def __init__(self, ignore_index: int = 255, collect_device: str = "cpu",
                 prefix: Optional[str] = None) -> None:
        super().__init__(2, ignore_index, ("no_change", "change"), collect_device, prefix)

    def compute_metrics(self, results: list) -> dict[str, float]:
        matrix = np.sum(results, axis=0) if results else np.zeros((2, 2))
        tp, fp, fn = matrix[1, 1], matrix[0, 1], matrix[1, 0]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return dict(precision=float(precision), recall=float(recall), F1=float(f1),
                    IoU=float(tp / (tp + fp + fn)) if tp + fp + fn else 0.0)
