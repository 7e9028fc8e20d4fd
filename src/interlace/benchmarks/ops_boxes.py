"""Benchmark cases for the rotated-box ops (`interlace.core.ops.rotated_boxes`)."""
from __future__ import annotations

import math

import numpy as np
import torch

from .common import BenchCase, Prepared

from interlace.core.ops.rotated_boxes import bev_iou_rotated, box_corners_bev

# nuScenes-like (l, w, h) per class: car, truck, bus, pedestrian, bicycle, traffic cone, barrier.
_CLASS_SIZES = np.array([
    [4.6, 1.9, 1.7], [6.9, 2.5, 2.8], [11.0, 2.9, 3.5], [0.7, 0.7, 1.8],
    [1.7, 0.6, 1.3], [0.4, 0.4, 1.1], [0.5, 2.5, 1.0],
])
_CLASS_FREQ = np.array([0.45, 0.08, 0.02, 0.2, 0.03, 0.1, 0.12])
_RANGE_M = 54.0


def random_scene_boxes(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 7)`` boxes (x, y, z, l, w, h, yaw) within 54 m with class-like sizes."""
    cls = rng.choice(len(_CLASS_SIZES), size=n, p=_CLASS_FREQ)
    size = _CLASS_SIZES[cls] * rng.uniform(0.85, 1.15, size=(n, 3))
    xy = rng.uniform(-_RANGE_M, _RANGE_M, size=(n, 2))
    z = rng.uniform(-2.0, 1.0, size=(n, 1)) + size[:, 2:3] / 2
    yaw = rng.uniform(-math.pi, math.pi, size=(n, 1))
    return np.concatenate([xy, z, size, yaw], axis=1)


def _predictions_near(gt: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    # Detector outputs cluster around objects; jittered GT copies make the overlapping
    # (clipping) path carry real work instead of the far-apart early-out only.
    near = gt[rng.integers(0, len(gt), size=n // 2)].copy()
    near[:, :2] += rng.normal(0.0, 0.5, size=(len(near), 2))
    near[:, 3:6] *= rng.uniform(0.8, 1.2, size=(len(near), 3))
    near[:, 6] += rng.normal(0.0, 0.3, size=len(near))
    return np.concatenate([near, random_scene_boxes(n - len(near), rng)], axis=0)


def _shapely_iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    from shapely.geometry import Polygon

    def polys(b: np.ndarray) -> list:
        corners = box_corners_bev(torch.from_numpy(b)).numpy()
        return [Polygon(c) for c in corners]

    pp, gp = polys(pred), polys(gt)
    out = np.zeros((len(pp), len(gp)))
    for i, p in enumerate(pp):
        for j, g in enumerate(gp):
            inter = p.intersection(g).area
            union = p.area + g.area - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _setup_bev_iou(scale: str) -> Prepared:
    n_pred, n_gt = {"full": (200, 500), "smoke": (10, 12)}[scale]
    rng = np.random.default_rng(0)
    gt = random_scene_boxes(n_gt, rng)
    pred = _predictions_near(gt, n_pred, rng)
    pred_t = torch.from_numpy(pred).float()
    gt_t = torch.from_numpy(gt).float()
    return Prepared(
        ours=lambda: bev_iou_rotated(pred_t, gt_t),
        reference=lambda: torch.from_numpy(_shapely_iou_matrix(pred, gt)),
        reference_name="shapely loop",
        notes=f"{n_pred} predictions x {n_gt} GT, float32; half the predictions are jittered GT",
    )


CASES: list[BenchCase] = [
    BenchCase(
        name="bev_iou_rotated",
        description="pairwise rotated BEV IoU, 200 predicted x 500 GT nuScenes-like boxes",
        setup=_setup_bev_iou,
        tags=["ops", "boxes"],
    ),
]
