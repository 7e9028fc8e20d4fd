"""Does a trained detector read motion from the sweeps' time lag? Score it twice, with the
normal test pipeline and with :class:`ReverseTimeLag` after the sweep loader, and compare
the velocities it predicts for the same moving vehicles.

A model that ignores the lag predicts the same velocity both times (a change of about 0 %
of its magnitude); one that reads the motion cue turns the velocity around (about 200 %).
The driving check's ``lag_reversal`` step asks for more than 50 %.

Pairing: both submissions are matched to the GT of the same samples with the devkit's rule
(:func:`~.motion_diagnosis.match_class`: greedy by score, BEV centre distance below
``dist_th``). A GT object matched in both runs gives one pair (normal prediction,
reversed prediction); only moving objects (GT speed > ``MOVING_SPEED``) of the vehicle
classes count. Reversal moves a lag-reading model's box by up to ``v * W`` (1.5 m at
10 m/s over 0.15 s of sweeps), so the match threshold is the devkit's 2 m, not 0.5 m.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from .motion_diagnosis import (DEFAULT_DIST_TH, MOVING_SPEED, VEHICLE_CLASSES,
                               load_eval_boxes, match_class)

__all__ = ["SWEEP_LOADER", "MIN_SPEED", "with_reversed_lags", "find_pipeline",
           "velocity_pairs", "velocity_change", "lag_reversal"]

SWEEP_LOADER = "LoadPointsFromMultiSweeps"
# m/s: the floor of |v_normal| in the relative change, so a vehicle predicted at exactly
# 0 m/s gives a large finite ratio rather than inf (far below the 1 m/s "moving" speed).
MIN_SPEED = 0.01


def with_reversed_lags(pipeline: Sequence[dict], window: Optional[float] = None
                       ) -> list[dict]:
    """A copy of a test `pipeline` (list of transform dicts) with ``ReverseTimeLag`` right
    after the sweep loader, so every later step (range filter, shuffle, voxelisation) sees
    the reversed lags as it sees normal ones.

    Raises:
        ValueError: the pipeline loads no sweeps (nothing to reverse) or already reverses.
    """
    steps = [dict(step) for step in pipeline]
    types = [step.get("type") for step in steps]
    if "ReverseTimeLag" in types:
        raise ValueError("the pipeline already has ReverseTimeLag")
    if SWEEP_LOADER not in types:
        raise ValueError(f"the pipeline has no {SWEEP_LOADER}: without sweeps there is no "
                         f"time lag to reverse (steps: {types})")
    at = types.index(SWEEP_LOADER) + 1
    return steps[:at] + [dict(type="ReverseTimeLag", window=window)] + steps[at:]


def find_pipeline(cfg: Any, loader: str = "test_dataloader") -> tuple[str, list[dict]]:
    """(dotted key, pipeline) of `loader`'s dataset, through dataset wrappers
    (``dataset.dataset...``); the key is what ``--cfg-options`` sets to replace it."""
    node, key = cfg[loader]["dataset"], f"{loader}.dataset"
    while "pipeline" not in node:
        if "dataset" not in node:
            raise KeyError(f"{loader}: no dataset with a pipeline under {key}")
        node, key = node["dataset"], key + ".dataset"
    return key + ".pipeline", [dict(step) for step in node["pipeline"]]


def velocity_pairs(gt_boxes: Any, normal: Any, reversed_: Any,
                   classes: Sequence[str] = VEHICLE_CLASSES,
                   dist_th: float = DEFAULT_DIST_TH) -> np.ndarray:
    """``(N, 6)`` rows (vx, vy normal; vx, vy reversed; GT vx, vy) in m/s, one per moving
    GT object of `classes` matched in both runs.

    Args:
        gt_boxes: devkit ``EvalBoxes`` of the GT, filtered as ``DetectionEval`` filters.
        normal, reversed_: the two runs' predicted ``EvalBoxes`` (same samples).
    """
    rows = []
    for name in classes:
        # GT boxes are the same objects in both matchings: their identity pairs them.
        first = {id(gt): pred for gt, pred in match_class(gt_boxes, normal, name, dist_th)}
        for gt, pred in match_class(gt_boxes, reversed_, name, dist_th):
            speed = float(np.linalg.norm(gt.velocity))
            if id(gt) in first and np.isfinite(speed) and speed > MOVING_SPEED:
                rows.append((*first[id(gt)].velocity[:2], *pred.velocity[:2],
                             *gt.velocity[:2]))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def velocity_change(pairs: np.ndarray) -> dict[str, Optional[float]]:
    """Statistics of :func:`velocity_pairs` rows (None where there are no pairs):

    * ``velocity_change``: mean over pairs of ``|v_rev - v_norm| / max(|v_norm|,
      MIN_SPEED)`` (the check's figure: 0 for a model that ignores the lag, 2 for one
      that turns every velocity around);
    * ``velocity_change_median`` and ``velocity_change_pooled`` (``sum |v_rev - v_norm| /
      sum |v_norm|``): the same, not swayed by a few near-zero normal speeds;
    * ``turned_share``: share of pairs whose velocity turned by more than 90 degrees;
    * ``normal_speed`` / ``reversed_speed`` / ``gt_speed``: mean speeds (m/s);
    * ``normal_along_gt`` / ``reversed_along_gt``: mean component along the GT direction
      of travel (m/s; negative: the model says the vehicle drives backwards);
    * ``pairs``: how many.
    """
    count = len(pairs)
    out: dict[str, Optional[float]] = dict(pairs=float(count))
    if not count:
        return out
    normal, reversed_, gt = pairs[:, 0:2], pairs[:, 2:4], pairs[:, 4:6]
    normal_speed = np.linalg.norm(normal, axis=1)
    delta = np.linalg.norm(reversed_ - normal, axis=1)
    ratio = delta / np.maximum(normal_speed, MIN_SPEED)
    heading = gt / np.linalg.norm(gt, axis=1, keepdims=True)  # GT speed > 1 m/s: no 0
    out.update(
        velocity_change=float(ratio.mean()), velocity_change_median=float(np.median(ratio)),
        velocity_change_pooled=float(delta.sum() / max(normal_speed.sum(), MIN_SPEED)),
        turned_share=float(np.mean(np.sum(normal * reversed_, axis=1) < 0)),
        normal_speed=float(normal_speed.mean()),
        reversed_speed=float(np.linalg.norm(reversed_, axis=1).mean()),
        gt_speed=float(np.linalg.norm(gt, axis=1).mean()),
        normal_along_gt=float(np.sum(normal * heading, axis=1).mean()),
        reversed_along_gt=float(np.sum(reversed_ * heading, axis=1).mean()))
    return out


def lag_reversal(nusc: Any, normal_path: str | os.PathLike,
                 reversed_path: str | os.PathLike, eval_set: str,
                 classes: Sequence[str] = VEHICLE_CLASSES,
                 dist_th: float = DEFAULT_DIST_TH) -> dict[str, Optional[float]]:
    """:func:`velocity_change` of two submission files of the same samples.

    Raises:
        ValueError: the two submissions cover different samples (not the same test run
            but for the lags).
    """
    gt_boxes, normal = load_eval_boxes(nusc, normal_path, eval_set)
    _, reversed_ = load_eval_boxes(nusc, reversed_path, eval_set)
    if set(normal.sample_tokens) != set(reversed_.sample_tokens):
        raise ValueError(f"{normal_path} and {reversed_path} cover different samples "
                         f"({len(normal.sample_tokens)} and {len(reversed_.sample_tokens)})")
    return velocity_change(velocity_pairs(gt_boxes, normal, reversed_, classes, dist_th))
