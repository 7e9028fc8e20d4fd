"""The nuScenes detection submission: building it from LiDAR-frame predictions,
checking it the way ``DetectionEval`` and the test server will, and writing it.

Format (https://www.nuscenes.org/object-detection, "Results format")::

    {'meta': {'use_camera', 'use_lidar', 'use_radar', 'use_map', 'use_external'},
     'results': {sample_token: [{'sample_token', 'translation', 'size', 'rotation',
                                 'velocity', 'detection_name', 'detection_score',
                                 'attribute_name'}, ...]}}

Policies, and why:

* Boxes beyond the class's evaluation range (``EVAL_RANGE``, measured in the ego frame)
  are dropped before anything else, as mmdet3d's exporter does; ``DetectionEval`` would
  drop them anyway, and dropping them first keeps them from using up the box budget.
* ``DetectionEval`` refuses a file with more than 500 boxes in a sample. By default the
  exporter keeps the 500 highest-scoring boxes and logs a warning naming the sample
  (``too_many='truncate'``); ``too_many='error'`` refuses instead. Either way it is
  explicit, never silent.
* Everything else the devkit would assert on (tokens outside the split, samples of the
  split missing, unknown names, NaN / infinite numbers) and what the server rejects
  (attribute not valid for the class, non-positive sizes) is refused by
  :func:`validate_submission` with a message naming the file and the problem.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
from mmengine.logging import print_log

from interlace.core.engine.atomic_files import write_json_atomic as _write_json_atomic

from ..data.nuscenes_names import CLASSES, EVAL_RANGE, attribute_for
from .box_frames import lidar_to_global

__all__ = ["MAX_BOXES_PER_SAMPLE", "SubmissionError", "DETECTION_NAMES",
           "VALID_ATTRIBUTES", "make_meta", "sample_detections", "build_submission",
           "validate_submission", "write_json_atomic", "write_submission", "load_submission"]

MAX_BOXES_PER_SAMPLE = 500  # detection_cvpr_2019's max_boxes_per_sample
DETECTION_NAMES: frozenset[str] = frozenset(CLASSES)
# Which attributes each class may carry (the devkit's detection_name_to_rel_attributes).
VALID_ATTRIBUTES: dict[str, frozenset[str]] = {
    **{name: frozenset({"vehicle.moving", "vehicle.parked", "vehicle.stopped"})
       for name in ("car", "truck", "construction_vehicle", "bus", "trailer")},
    "pedestrian": frozenset({"pedestrian.moving", "pedestrian.standing",
                             "pedestrian.sitting_lying_down"}),
    "motorcycle": frozenset({"cycle.with_rider", "cycle.without_rider"}),
    "bicycle": frozenset({"cycle.with_rider", "cycle.without_rider"}),
    "barrier": frozenset({""}), "traffic_cone": frozenset({""}),
}
META_KEYS = ("use_camera", "use_lidar", "use_radar", "use_map", "use_external")
BOX_KEYS = ("sample_token", "translation", "size", "rotation", "velocity", "detection_name",
            "detection_score", "attribute_name")
_MAX_LISTED = 10  # problems listed in one error message


class SubmissionError(ValueError):
    """A submission that DetectionEval or the server would reject; the message names the
    file (or the source of the predictions) and every problem found (up to ten)."""


def make_meta(modality: Optional[Mapping[str, Any]] = None) -> dict[str, bool]:
    """The ``meta`` block: which inputs the method used. `modality` gives ``use_camera`` /
    ``use_lidar`` (mmdet3d's config key) and may set the others; they default to False."""
    modality = dict(modality or {})
    unknown = set(modality) - set(META_KEYS)
    if unknown:
        raise ValueError(f"modality: unknown keys {sorted(unknown)}; allowed: {META_KEYS}")
    return {key: bool(modality.get(key, False)) for key in META_KEYS}


def _as_array(value: Any, name: str, token: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, on any device
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SubmissionError(f"sample {token}: {name} is not numeric ({error})") from None


def sample_detections(token: str, boxes: Any, scores: Any, labels: Any, lidar2ego: Any,
                      ego2global: Any, classes: Sequence[str] = CLASSES,
                      max_boxes: int = MAX_BOXES_PER_SAMPLE, too_many: str = "truncate",
                      drop_out_of_range: bool = True) -> list[dict]:
    """Submission entries for one sample's LiDAR-frame predictions.

    Args:
        token: the sample token.
        boxes: ``(N, 9)`` ``(x, y, z, l, w, h, yaw, vx, vy)`` (or ``(N, 7)``: zero
            velocity), geometric centre, key-frame LiDAR frame.
        scores: ``(N,)``; labels: ``(N,)`` indices into `classes`.
        lidar2ego, ego2global: ``(4, 4)`` poses of the sample.
        classes: the label names (must be nuScenes detection names).
        max_boxes: the most boxes a sample may have.
        too_many: ``'truncate'`` keeps the `max_boxes` best scores (logging a warning),
            ``'error'`` raises :class:`SubmissionError`.
        drop_out_of_range: drop boxes farther (xy, ego frame) than their class's
            evaluation range.

    Returns:
        Entries sorted by descending score, numbers as Python floats.
    """
    if too_many not in ("truncate", "error"):
        raise ValueError(f"too_many must be 'truncate' or 'error', got {too_many!r}")
    b = _as_array(boxes, "bboxes_3d", token)
    s = _as_array(scores, "scores_3d", token).reshape(-1)
    lab = _as_array(labels, "labels_3d", token).reshape(-1)
    if b.size == 0:
        b = b.reshape(0, 9)
    if b.ndim != 2 or b.shape[1] not in (7, 9) or not len(b) == len(s) == len(lab):
        raise SubmissionError(f"sample {token}: expected bboxes_3d (N, 9), scores_3d (N,), "
                              f"labels_3d (N,); got {b.shape}, {s.shape}, {lab.shape}")
    if len(lab) and (np.any(lab != np.round(lab)) or lab.min() < 0 or lab.max() >= len(classes)):
        raise SubmissionError(f"sample {token}: labels_3d must be integers in "
                              f"[0, {len(classes)}), got {sorted(set(lab.tolist()))[:10]}")
    lab = lab.astype(np.int64)
    bad = ~(np.all(np.isfinite(b), axis=1) & np.isfinite(s))
    if bad.any():
        raise SubmissionError(f"sample {token}: {int(bad.sum())} boxes have NaN or infinite "
                              f"values (first: row {int(np.flatnonzero(bad)[0])})")
    translation, size, rotation, velocity = lidar_to_global(b, lidar2ego, ego2global)
    names = [classes[i] for i in lab]
    keep = np.ones(len(b), dtype=bool)
    if drop_out_of_range:
        ego_xy = (np.asarray(lidar2ego, dtype=np.float64)[:3, :3] @ b[:, :3].T).T[:, :2] \
            + np.asarray(lidar2ego, dtype=np.float64)[:2, 3]
        limit = np.array([EVAL_RANGE.get(n, np.inf) for n in names])
        keep = np.linalg.norm(ego_xy, axis=1) <= limit
    order = [i for i in np.argsort(-s, kind="stable") if keep[i]]
    if len(order) > max_boxes:
        message = (f"sample {token}: {len(order)} boxes in range, more than the "
                   f"{max_boxes} DetectionEval allows")
        if too_many == "error":
            raise SubmissionError(message)
        print_log(f"{message}; keeping the {max_boxes} highest-scoring ones",
                  logger="current", level=logging.WARNING)
        order = order[:max_boxes]
    entries = []
    for i in order:
        speed = float(np.hypot(*velocity[i]))
        entries.append({
            "sample_token": token,
            "translation": [float(v) for v in translation[i]],
            "size": [float(v) for v in size[i]],
            "rotation": [float(v) for v in rotation[i]],
            "velocity": [float(v) for v in velocity[i]],
            "detection_name": names[i],
            "detection_score": float(s[i]),
            "attribute_name": attribute_for(names[i], speed),
        })
    return entries


def build_submission(predictions: Iterable[Mapping[str, Any]],
                     modality: Optional[Mapping[str, Any]] = None,
                     classes: Sequence[str] = CLASSES, **options: Any) -> dict:
    """A submission dict from per-sample predictions.

    Args:
        predictions: one mapping per sample with ``token``, ``bboxes_3d`` ``(N, 9)``,
            ``scores_3d`` ``(N,)``, ``labels_3d`` ``(N,)``, ``lidar2ego`` and
            ``ego2global`` ``(4, 4)``.
        modality: the ``meta`` flags (see :func:`make_meta`).
        classes: label names.
        options: passed to :func:`sample_detections` (``max_boxes``, ``too_many``,
            ``drop_out_of_range``).

    Raises:
        SubmissionError: a token appears twice, or a sample's predictions are unusable.
    """
    results: dict[str, list[dict]] = {}
    for prediction in predictions:
        missing = [k for k in ("token", "bboxes_3d", "scores_3d", "labels_3d", "lidar2ego",
                               "ego2global") if prediction.get(k) is None]
        if missing:
            raise SubmissionError(f"a prediction lacks {missing} (has {sorted(prediction)})")
        token = str(prediction["token"])
        if token in results:
            raise SubmissionError(f"sample {token} has predictions twice")
        results[token] = sample_detections(
            token, prediction["bboxes_3d"], prediction["scores_3d"], prediction["labels_3d"],
            prediction["lidar2ego"], prediction["ego2global"], classes=classes, **options)
    return {"meta": make_meta(modality), "results": results}


def _finite_list(value: Any, length: int) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == length
            and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) for v in value))


def _box_problems(token: str, index: int, box: Any) -> list[str]:
    where = f"results[{token!r}][{index}]"
    if not isinstance(box, Mapping):
        return [f"{where} is a {type(box).__name__}, not an object"]
    missing = [k for k in BOX_KEYS if k not in box]
    if missing:
        return [f"{where} lacks {missing}"]
    problems = []
    if box["sample_token"] != token:
        problems.append(f"{where}.sample_token is {box['sample_token']!r}, not its key")
    for key, length in (("translation", 3), ("size", 3), ("rotation", 4), ("velocity", 2)):
        if not _finite_list(box[key], length):
            problems.append(f"{where}.{key} must be {length} finite numbers, got {box[key]!r}")
    if _finite_list(box["size"], 3) and min(box["size"]) <= 0:
        problems.append(f"{where}.size must be positive, got {box['size']}")
    if _finite_list(box["rotation"], 4) and abs(math.hypot(*box["rotation"]) - 1) > 1e-3:
        problems.append(f"{where}.rotation is not a unit quaternion: {box['rotation']}")
    score = box["detection_score"]
    if not (isinstance(score, (int, float)) and not isinstance(score, bool)
            and math.isfinite(score)):
        problems.append(f"{where}.detection_score must be a finite number, got {score!r}")
    name = box["detection_name"]
    if name not in DETECTION_NAMES:
        problems.append(f"{where}.detection_name {name!r} is not a nuScenes detection class")
    elif box["attribute_name"] not in VALID_ATTRIBUTES[name]:
        allowed = sorted(VALID_ATTRIBUTES[name])
        problems.append(f"{where}.attribute_name {box['attribute_name']!r} is not valid for "
                        f"{name} (allowed: {allowed})")
    return problems


def validate_submission(submission: Any, expected_tokens: Optional[Iterable[str]] = None,
                        source: str = "submission",
                        max_boxes: int = MAX_BOXES_PER_SAMPLE) -> None:
    """Raise :class:`SubmissionError` unless `submission` would be accepted.

    Args:
        submission: the decoded JSON.
        expected_tokens: the sample tokens of the evaluation split; when given, the
            results must cover exactly these (``DetectionEval`` asserts set equality).
        source: what to call the submission in messages (its file name).
        max_boxes: the most boxes a sample may have.
    """
    problems: list[str] = []
    if not isinstance(submission, Mapping) or "results" not in submission \
            or "meta" not in submission:
        raise SubmissionError(f"{source}: expected an object with 'meta' and 'results'")
    meta = submission["meta"]
    if not isinstance(meta, Mapping) or any(not isinstance(meta.get(k), bool) for k in META_KEYS):
        problems.append(f"meta must give true/false for each of {list(META_KEYS)}, got {meta!r}")
    results = submission["results"]
    if not isinstance(results, Mapping):
        raise SubmissionError(f"{source}: 'results' must map sample tokens to lists of boxes")
    for token, boxes in results.items():
        if not isinstance(boxes, list):
            problems.append(f"results[{token!r}] is not a list")
            continue
        if len(boxes) > max_boxes:
            problems.append(f"results[{token!r}] has {len(boxes)} boxes; at most "
                            f"{max_boxes} are allowed")
        for index, box in enumerate(boxes):
            problems.extend(_box_problems(token, index, box))
            if len(problems) > _MAX_LISTED:
                break
    if expected_tokens is not None:
        expected = set(expected_tokens)
        extra = sorted(set(results) - expected)
        lacking = sorted(expected - set(results))
        if extra:
            problems.append(f"{len(extra)} sample tokens are not in the evaluation split, "
                            f"e.g. {extra[:3]}")
        if lacking:
            problems.append(f"{len(lacking)} of the split's {len(expected)} samples have no "
                            f"entry (DetectionEval needs every one, even with no boxes), "
                            f"e.g. {lacking[:3]}")
    if problems:
        listed = problems[:_MAX_LISTED]
        more = f"\n  ... and more" if len(problems) > _MAX_LISTED else ""
        raise SubmissionError(f"{source}: {len(problems)} problem(s):\n  "
                              + "\n  ".join(listed) + more)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write `payload` as compact JSON atomically; NaN / infinity are refused, as the
    devkit's loader would choke on them."""
    return _write_json_atomic(path, payload, indent=None, allow_nan=False)


def write_submission(submission: Mapping[str, Any], path: str | os.PathLike,
                     expected_tokens: Optional[Iterable[str]] = None) -> Path:
    """Validate `submission` (see :func:`validate_submission`) and write it atomically.
    Nothing is written when it is refused."""
    validate_submission(submission, expected_tokens, source=str(path))
    return write_json_atomic(path, submission)


def load_submission(path: str | os.PathLike) -> dict:
    """Read and validate (without a split) a submission JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"submission file not found: {path}")
    try:
        with path.open() as stream:
            submission = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SubmissionError(f"{path}: not valid JSON ({error})") from None
    validate_submission(submission, source=str(path))
    return submission
