"""Motion diagnosis of a nuScenes detection submission: per class, how well the detected
objects' velocity and direction of travel match the GT.

mAVE and mAOE are averages over every matched detection, so they cannot tell a detector
that predicts 0 m/s everywhere from one that gets moving objects right and parked ones
wrong. This module matches the submission's boxes to the GT as the devkit does and splits
the matched pairs by GT speed:

* **moving**: GT speed > 1 m/s (``MOVING_SPEED``). Below that, the annotated velocity
  (a finite difference of hand-placed boxes) is too noisy for a direction of travel.
* **parked**: GT speed < 0.2 m/s (``PARKED_SPEED``), the speed under which the exporter
  and mmdet3d's give a vehicle ``vehicle.parked`` / ``vehicle.stopped`` instead of
  ``vehicle.moving``. Objects between the two thresholds belong to neither group; objects
  whose GT velocity the devkit cannot compute (NaN: a single annotation) to neither.

Per class and per group it reports, on the matched pairs:

* ``moving_vel_err``: mean ``|v_pred - v_gt|`` (m/s, the devkit's ``velocity_l2``);
* ``moving_zero_vel_err``: the same for a 0 m/s prediction, i.e. the mean GT speed;
* ``moving_speed_ratio``: mean ``|v_pred| / |v_gt|`` (below 1: speeds biased low);
* ``moving_dir_acc`` / ``parked_dir_acc``: the fraction with ``|yaw_pred - yaw_gt| <
  pi/2`` (wrapped, the devkit's ``yaw_diff``): the box points the right way;
* ``parked_vel_err``: mean ``|v_pred - v_gt|`` for parked objects (motion made up);
* the counts: GT objects, predictions, matched pairs, matched / GT moving and parked.

Classes: the eight classes the devkit scores velocity for (barrier and traffic_cone do
not move). Groups pool the objects (each object weighs the same, so cars dominate):

* ``vehicle``: car, truck, bus, trailer, construction_vehicle -- the classes the devkit
  gives ``vehicle.moving`` / ``vehicle.parked`` attributes. Motorcycle and bicycle carry
  ``cycle.with_rider`` / ``cycle.without_rider`` instead, so they are left out of this
  group, as pedestrians are; each has its own row.
* ``all``: the eight classes.

GT and predictions are loaded and filtered exactly as ``DetectionEval`` does (devkit
``load_gt``, ``add_center_dist``, ``filter_eval_boxes`` with detection_cvpr_2019's class
ranges). ``tools/analysis_tools/motion_report.py`` is the command-line entry point.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from interlace.core.engine.atomic_files import write_json_atomic

# The exporter's moving / static attribute threshold (0.2 m/s, as mmdet3d's) is the
# "parked" threshold here: one speed decides both what a box is called and how it is judged.
from ..data.nuscenes_names import MOVING_SPEED as PARKED_SPEED
from .submission import SubmissionError, load_submission

__all__ = ["MOTION_CLASSES", "VEHICLE_CLASSES", "GROUPS", "MOVING_SPEED", "PARKED_SPEED",
           "DEFAULT_DIST_TH", "match_class", "pair_table", "summarize", "diagnose",
           "load_eval_boxes", "motion_diagnosis", "format_table", "write_report"]

MOTION_CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle",
                  "bicycle", "pedestrian")
VEHICLE_CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle")
GROUPS = {"vehicle": VEHICLE_CLASSES, "all": MOTION_CLASSES}
MOVING_SPEED = 1.0  # m/s: GT speed above which an object is "moving"
DEFAULT_DIST_TH = 2.0  # m: the middle of the devkit's match thresholds (0.5, 1, 2, 4)
_RIGHT_WAY = math.pi / 2  # a heading within 90 degrees of the GT points the right way
_MAX_LISTED = 3  # tokens quoted in an error message


def match_class(gt_boxes: Any, pred_boxes: Any, class_name: str,
                dist_th: float = DEFAULT_DIST_TH) -> list[tuple[Any, Any]]:
    """The (GT box, predicted box) pairs of `class_name` matched by the devkit's rule.

    ``nuscenes.eval.detection.algo.accumulate`` keeps the matches only as cumulative means
    interpolated over recall (``DetectionMetricData``), never the pairs themselves, so a
    breakdown by GT speed needs the matching run again. This is its loop unchanged:
    predictions in decreasing score (ties in decreasing index, as its ``sorted(...)[::-1]``),
    each taking the nearest untaken GT box of its class in its sample by BEV centre
    distance, matched when that distance is below `dist_th`.
    """
    from nuscenes.eval.common.utils import center_distance

    preds = [box for box in pred_boxes.all if box.detection_name == class_name]
    order = [i for _, i in sorted((box.detection_score, i) for i, box in enumerate(preds))][::-1]
    taken: set[tuple[str, int]] = set()
    pairs = []
    for index in order:
        pred = preds[index]
        candidates = gt_boxes[pred.sample_token]
        best, best_index = np.inf, None
        for gt_index, gt in enumerate(candidates):
            if gt.detection_name == class_name and (pred.sample_token, gt_index) not in taken:
                distance = center_distance(gt, pred)
                if distance < best:
                    best, best_index = distance, gt_index
        if best < dist_th:
            taken.add((pred.sample_token, best_index))
            pairs.append((candidates[best_index], pred))
    return pairs


def pair_table(pairs: Iterable[tuple[Any, Any]]) -> np.ndarray:
    """``(N, 4)`` rows of (GT speed, predicted speed, velocity error, yaw error) for the
    pairs; speeds and velocity error in m/s, the yaw error in [0, pi] (NaN GT velocity
    gives NaN speed and error)."""
    from nuscenes.eval.common.utils import velocity_l2, yaw_diff

    rows = [(float(np.linalg.norm(gt.velocity)), float(np.linalg.norm(pred.velocity)),
             float(velocity_l2(gt, pred)), float(yaw_diff(gt, pred, period=2 * np.pi)))
            for gt, pred in pairs]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _mean(values: np.ndarray) -> Optional[float]:
    """The mean, or None for no values (written as JSON null, shown as '-')."""
    return float(np.mean(values)) if len(values) else None


def summarize(table: np.ndarray, gt_speeds: np.ndarray, num_preds: int) -> dict[str, Any]:
    """One report row from a :func:`pair_table`, the speeds of all GT objects of the row
    (matched or not, for the counts) and the number of predictions."""
    with np.errstate(invalid="ignore"):  # NaN speeds are neither moving nor parked
        moving = table[:, 0] > MOVING_SPEED
        parked = table[:, 0] < PARKED_SPEED
        gt_moving = int(np.sum(gt_speeds > MOVING_SPEED))
        gt_parked = int(np.sum(gt_speeds < PARKED_SPEED))
    right_way = table[:, 3] < _RIGHT_WAY
    return dict(
        gt=int(len(gt_speeds)), pred=int(num_preds), matched=int(len(table)),
        gt_moving=gt_moving, moving=int(moving.sum()),
        moving_vel_err=_mean(table[moving, 2]),
        moving_zero_vel_err=_mean(table[moving, 0]),  # |0 - v_gt| = GT speed
        moving_speed_ratio=_mean(table[moving, 1] / table[moving, 0]),
        moving_dir_acc=_mean(right_way[moving]),
        gt_parked=gt_parked, parked=int(parked.sum()),
        parked_vel_err=_mean(table[parked, 2]),
        parked_dir_acc=_mean(right_way[parked]))


def diagnose(gt_boxes: Any, pred_boxes: Any, dist_th: float = DEFAULT_DIST_TH,
             min_score: float = 0.0, classes: Sequence[str] = MOTION_CLASSES) -> dict[str, Any]:
    """Per-class and per-group rows (see :func:`summarize`) from devkit ``EvalBoxes``
    already loaded and filtered; predictions scoring below `min_score` are dropped before
    matching (0 keeps all, as ``DetectionEval`` does)."""
    from nuscenes.eval.common.data_classes import EvalBoxes

    if min_score > 0:
        kept = EvalBoxes()
        for token in pred_boxes.sample_tokens:
            kept.add_boxes(token, [b for b in pred_boxes[token] if b.detection_score >= min_score])
        pred_boxes = kept
    tables, speeds, counts = {}, {}, {}
    for name in classes:
        tables[name] = pair_table(match_class(gt_boxes, pred_boxes, name, dist_th))
        speeds[name] = np.array([np.linalg.norm(b.velocity) for b in gt_boxes.all
                                 if b.detection_name == name], dtype=np.float64)
        counts[name] = sum(1 for b in pred_boxes.all if b.detection_name == name)
    rows = {name: summarize(tables[name], speeds[name], counts[name]) for name in classes}
    groups = {}
    for group, members in GROUPS.items():
        members = [m for m in members if m in classes]
        if members:
            groups[group] = summarize(np.concatenate([tables[m] for m in members]),
                                      np.concatenate([speeds[m] for m in members]),
                                      sum(counts[m] for m in members))
    return dict(dist_th=dist_th, min_score=min_score, moving_speed=MOVING_SPEED,
                parked_speed=PARKED_SPEED, classes=rows, groups=groups)


def _quiet() -> contextlib.ExitStack:
    """Silence the devkit's loaders (their tqdm bar goes to stderr even when not verbose)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def load_eval_boxes(nusc: Any, result_path: str | os.PathLike, eval_set: str
                    ) -> tuple[Any, Any]:
    """GT and predicted ``EvalBoxes`` of `eval_set`, loaded, given their ego distance and
    filtered (class range, boxes without points, bikes in racks) as ``DetectionEval`` does.

    Unlike ``DetectionEval`` the submission may cover only part of the split (the
    diagnosis is about the matched pairs); the GT is kept for its samples only.

    Raises:
        FileNotFoundError: no file at `result_path`.
        SubmissionError: the file is not a valid submission, or has sample tokens outside
            the GT of `eval_set` (the message names the file).
        ValueError: `eval_set` does not fit the database's version.
    """
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.common.loaders import (add_center_dist, filter_eval_boxes,
                                              get_samples_of_custom_split, load_gt,
                                              load_gt_of_sample_tokens)
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.utils.splits import is_predefined_split

    path = Path(result_path)
    submission = load_submission(path)  # checks what load_prediction asserts, naming the file
    try:
        with _quiet():
            if is_predefined_split(eval_set):
                gt_boxes = load_gt(nusc, eval_set, DetectionBox)
            else:
                tokens = get_samples_of_custom_split(split_name=eval_set, nusc=nusc)
                gt_boxes = load_gt_of_sample_tokens(nusc, tokens, DetectionBox)
    except (AssertionError, ValueError) as error:
        raise ValueError(f"cannot load the GT of {eval_set!r} from {nusc.version}: "
                         f"{error}") from None
    known = set(gt_boxes.sample_tokens)
    outside = sorted(set(submission["results"]) - known)
    if outside:
        raise SubmissionError(
            f"{path}: {len(outside)} of its {len(submission['results'])} sample tokens are "
            f"not in the GT of {eval_set} ({nusc.version}), e.g. {outside[:_MAX_LISTED]}; "
            "was it made for another split or database?")
    # load_prediction's body without reading the file again (a trainval submission is
    # hundreds of MB); its per-sample box limit is checked by load_submission.
    pred_boxes = EvalBoxes.deserialize(submission["results"], DetectionBox)
    covered = EvalBoxes()
    for token in submission["results"]:
        covered.add_boxes(token, gt_boxes[token])
    config = config_factory("detection_cvpr_2019")
    with _quiet():
        gt_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, covered), config.class_range)
        pred_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, pred_boxes),
                                       config.class_range)
    return gt_boxes, pred_boxes


def motion_diagnosis(nusc: Any, result_path: str | os.PathLike, eval_set: str,
                     dist_th: float = DEFAULT_DIST_TH, min_score: float = 0.0
                     ) -> dict[str, Any]:
    """The motion report of a submission file as a dict (what ``--out`` writes): the
    :func:`diagnose` rows plus ``submission``, ``eval_set``, ``version``, ``samples``
    (in the submission) and ``split_samples`` (in the GT of `eval_set`)."""
    from .nuscenes_metric import split_sample_tokens  # predefined and custom splits alike

    gt_boxes, pred_boxes = load_eval_boxes(nusc, result_path, eval_set)
    report = diagnose(gt_boxes, pred_boxes, dist_th=dist_th, min_score=min_score)
    split_samples = len(split_sample_tokens(nusc, eval_set))
    return dict(submission=str(result_path), eval_set=eval_set, version=nusc.version,
                samples=len(pred_boxes.sample_tokens), split_samples=split_samples, **report)


_COLUMNS = (("matched", "matched", "d"), ("moving", "moving", "ratio"),
            ("moving_vel_err", "vel_err", ".3f"), ("moving_zero_vel_err", "0m/s_err", ".3f"),
            ("moving_speed_ratio", "spd_ratio", ".3f"), ("moving_dir_acc", "dir_mov", ".3f"),
            ("parked", "parked", "ratio"), ("parked_dir_acc", "dir_park", ".3f"),
            ("parked_vel_err", "park_vel", ".3f"))
LEGEND = ("matched within {dist:g} m (devkit centre distance, greedy by score); moving: GT "
          "speed > {moving:g} m/s, parked: < {parked:g} m/s (matched/GT)\n"
          "vel_err: mean |v_pred - v_gt| of moving objects (m/s); 0m/s_err: the same for a "
          "0 m/s prediction; spd_ratio: mean |v_pred| / |v_gt|\n"
          "dir_mov / dir_park: fraction with |yaw_pred - yaw_gt| < 90 deg; park_vel: mean "
          "|v_pred - v_gt| of parked objects (m/s)")


def _cell(row: dict[str, Any], key: str, kind: str) -> str:
    if kind == "ratio":
        return f"{row[key]}/{row['gt_' + key]}"
    value = row[key]
    return "-" if value is None else format(value, kind)


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width text table: one row per class, then the groups, then a legend."""
    width = 10
    lines = [f"{'class':<21}" + "".join(f"{title:>{width}}" for _, title, _ in _COLUMNS)]
    rows = list(report["classes"].items()) + [(f"[{g}]", r) for g, r in report["groups"].items()]
    for name, row in rows:
        lines.append(f"{name:<21}" + "".join(f"{_cell(row, key, kind):>{width}}"
                                             for key, _, kind in _COLUMNS))
    lines.append(LEGEND.format(moving=report["moving_speed"], parked=report["parked_speed"],
                               dist=report["dist_th"]))
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `report` as JSON atomically (no NaN: empty means are already None)."""
    return write_json_atomic(path, report, allow_nan=False)
