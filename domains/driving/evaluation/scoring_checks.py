"""Checks of the whole scoring chain (info file -> LiDAR-frame boxes -> submission JSON ->
nuscenes-devkit ``DetectionEval``) with predictions whose score is known in advance:

  gt                   the info file's GT boxes as predictions (score 1): mAP >= 0.99,
                       mATE / mASE / mAOE / mAVE near 0
  gt_aug_undone        the same after a random BEV rotation / scale / flip / translation
                       (transform_boxes) and its undoing (undo_lidar_augmentation): as gt
  random               random boxes: mAP about 0
  gt_shifted_1m        GT moved 1 m sideways: mAP clearly below gt's, mATE about 1

The devkit averages over all ten classes and gives a class without GT AP 0 and TP errors
1, so on a split where some classes have no GT its numbers say more about the split than
about the export. Every case is then judged on the same *present-class* numbers
(``mAP_present``, ``mATE_present``, ...: the classes with GT in the split), never the GT
cases on one class set and the others on another.

``tools/analysis_tools/check_nuscenes_scoring.py`` is the command-line entry point.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["COLUMNS", "NEAR_ZERO", "gt_predictions", "augmented_and_undone", "random_boxes",
           "shifted", "present_class_metrics", "expectations", "format_table", "run_checks"]

COLUMNS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
NEAR_ZERO = 0.01  # what "an error of about 0" means for the GT cases
_TP_ERRORS = (("trans_err", "mATE"), ("scale_err", "mASE"), ("orient_err", "mAOE"),
              ("vel_err", "mAVE"), ("attr_err", "mAAE"))


def gt_predictions(infos: list[dict], num_classes: int = 10) -> list[dict]:
    """Per sample: the GT boxes DetectionEval keeps (valid, known class) as ``(N, 9)``
    LiDAR-frame rows with their labels, token and poses; NaN velocity becomes 0."""
    out = []
    for info in infos:
        kept = [inst for inst in info.get("instances", [])
                if inst.get("bbox_3d_isvalid", True) and 0 <= inst["bbox_label_3d"] < num_classes]
        rows = np.array([[*inst["bbox_3d"], *inst.get("velocity", (0.0, 0.0))] for inst in kept],
                        dtype=np.float64).reshape(-1, 9)
        rows[:, 7:9] = np.nan_to_num(rows[:, 7:9])
        out.append(dict(token=info["token"], lidar2ego=info["lidar_points"]["lidar2ego"],
                        ego2global=info["ego2global"], bboxes_3d=rows,
                        scores_3d=np.ones(len(rows)),
                        labels_3d=np.array([inst["bbox_label_3d"] for inst in kept], dtype=np.int64)))
    return out


def augmented_and_undone(samples: list[dict], rng: np.random.Generator) -> tuple[list[dict], float]:
    """GT boxes sent through a random BEV augmentation and back, as a model's predictions
    are; also returns the largest change of any box number (should be ~1e-6 or less)."""
    from interlace.domains.driving.data.transforms.box_transforms import (
        flip_matrix, rotation_matrix, scale_matrix, transform_boxes, translation_matrix,
        undo_lidar_augmentation)

    out, worst = [], 0.0
    for sample in samples:
        matrix = (translation_matrix(rng.normal(0, 0.5, 3)) @ scale_matrix(rng.uniform(0.9, 1.1))
                  @ rotation_matrix(rng.uniform(-math.pi, math.pi)))
        for direction in ("horizontal", "vertical"):
            if rng.random() < 0.5:
                matrix = flip_matrix(direction) @ matrix
        boxes = sample["bboxes_3d"]
        back = np.asarray(undo_lidar_augmentation(transform_boxes(boxes, matrix), matrix))
        if len(boxes):
            diff = np.abs(back - boxes)
            diff[:, 6] = np.abs(np.angle(np.exp(1j * (back[:, 6] - boxes[:, 6]))))
            worst = max(worst, float(diff.max()))
        out.append(dict(sample, bboxes_3d=back))
    return out, worst


def random_boxes(samples: list[dict], rng: np.random.Generator, per_sample: int = 30) -> list[dict]:
    """Boxes of random class, place, size and heading within 50 m."""
    out = []
    for sample in samples:
        n = per_sample
        rows = np.concatenate([rng.uniform(-50, 50, (n, 2)), rng.normal(-1, 0.5, (n, 1)),
                               rng.uniform(0.3, 8, (n, 3)), rng.uniform(-math.pi, math.pi, (n, 1)),
                               rng.normal(0, 3, (n, 2))], axis=1)
        out.append(dict(sample, bboxes_3d=rows, scores_3d=rng.uniform(0, 1, n),
                        labels_3d=rng.integers(0, 10, n)))
    return out


def shifted(samples: list[dict], rng: np.random.Generator, distance: float = 1.0) -> list[dict]:
    """GT moved `distance` metres in a random horizontal direction."""
    out = []
    for sample in samples:
        rows = sample["bboxes_3d"].copy()
        angle = rng.uniform(-math.pi, math.pi, len(rows))
        rows[:, 0] += distance * np.cos(angle)
        rows[:, 1] += distance * np.sin(angle)
        out.append(dict(sample, bboxes_3d=rows))
    return out


def present_class_metrics(summary: dict, present: Sequence[str]) -> dict[str, float]:
    """mAP and TP errors of a devkit summary over the classes `present` (``*_present``);
    a TP error the devkit leaves undefined for a class (NaN) is left out of its mean."""
    out = {"mAP_present": float(np.mean([summary["mean_dist_aps"][n] for n in present]))
           if present else float("nan")}
    for key, name in _TP_ERRORS:
        values = [summary["label_tp_errors"][n][key] for n in present]
        finite = [v for v in values if v is not None and np.isfinite(v)]
        out[f"{name}_present"] = float(np.mean(finite)) if finite else float("nan")
    return out


def expectations(table: dict[str, dict], all_classes_present: bool = True
                 ) -> list[tuple[str, bool]]:
    """(description, passed) for every expectation on the cases present in `table`.

    All cases are judged on one class set: the devkit's ten-class numbers when every class
    has GT in the split, otherwise the ``*_present`` numbers (see
    :func:`present_class_metrics`) for every case alike.
    """
    suffix = "" if all_classes_present else "_present"
    checks = []
    for case in ("gt", "gt_aug_undone"):
        if case in table:
            row = table[case]
            value = row["mAP" + suffix]
            checks.append((f"{case}: mAP{suffix} >= 0.99 (got {value:.4f})", value >= 0.99))
            for name in ("mATE", "mASE", "mAOE", "mAVE"):
                value = row[name + suffix]
                checks.append((f"{case}: {name}{suffix} < {NEAR_ZERO} (got {value:.4f})",
                               value < NEAR_ZERO))
    if "random" in table:
        value = table["random"]["mAP" + suffix]
        checks.append((f"random: mAP{suffix} < 0.05 (got {value:.4f})", value < 0.05))
    if "gt_shifted_1m" in table and "gt" in table:
        row, gt = table["gt_shifted_1m"], table["gt"]
        shifted_map, gt_map, ate = row["mAP" + suffix], gt["mAP" + suffix], row["mATE" + suffix]
        checks.append((f"gt_shifted_1m: mAP{suffix} < gt mAP{suffix} - 0.1 (got "
                       f"{shifted_map:.4f} vs {gt_map:.4f})", shifted_map < gt_map - 0.1))
        checks.append((f"gt_shifted_1m: 0.8 < mATE{suffix} < 1.2 (got {ate:.4f})",
                       0.8 < ate < 1.2))
    return checks


def format_table(table: dict[str, dict], columns: Sequence[str] = COLUMNS) -> str:
    """A fixed-width text table of `columns` for every case of `table`."""
    width = max(8, max(len(c) for c in columns) + 1)
    lines = [f"{'case':<16}" + "".join(f"{c:>{width}}" for c in columns)]
    for case, row in table.items():
        lines.append(f"{case:<16}" + "".join(f"{row[c]:>{width}.4f}" for c in columns))
    return "\n".join(lines)


def run_checks(nusc: Any, infos: list[dict], eval_set: str, out_dir: str | os.PathLike,
               seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Score the four cases with DetectionEval; returns ``{'table', 'checks', 'passed',
    'classes_without_gt', 'aug_roundtrip_max_error', ...}`` and writes it to
    ``out_dir/scoring_checks.json`` (each case's submission and devkit summary go to
    ``out_dir/<case>/``)."""
    from .nuscenes_metric import run_detection_eval, split_sample_tokens, summary_to_metrics
    from .submission import build_submission, write_json_atomic, write_submission

    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    split = split_sample_tokens(nusc, eval_set)
    gt = gt_predictions(infos)
    augmented, roundtrip = augmented_and_undone(gt, rng)
    cases = {"gt": gt, "gt_aug_undone": augmented, "random": random_boxes(gt, rng),
             "gt_shifted_1m": shifted(gt, rng)}
    table, per_class, present, summary = {}, {}, None, None
    for case, predictions in cases.items():
        submission = build_submission(predictions, dict(use_lidar=True, use_camera=False))
        if present is None:  # the GT case comes first: its classes are those with GT in range
            present = sorted({box["detection_name"] for boxes in submission["results"].values()
                              for box in boxes})
        path = write_submission(submission, out_dir / case / "results_nusc.json", split)
        summary, _ = run_detection_eval(nusc, str(path), eval_set, str(out_dir / case))
        metrics = summary_to_metrics(summary)
        table[case] = {c: metrics[c] for c in COLUMNS}
        table[case].update(present_class_metrics(summary, present))
        # NaN (a TP error the devkit does not define for a class) is written as null.
        per_class[case] = {name: {key: (v if np.isfinite(v) else None) for key, v in dict(
            AP=summary["mean_dist_aps"][name], **summary["label_tp_errors"][name]).items()}
            for name in summary["mean_dist_aps"]}
        log(f"  {case}: mAP {metrics['mAP']:.4f}, NDS {metrics['NDS']:.4f}")
    absent = sorted(set(summary["mean_dist_aps"]) - set(present))
    checks = expectations(table, all_classes_present=not absent)
    report = dict(eval_set=eval_set, samples=len(infos),
                  gt_boxes=int(sum(len(s["bboxes_3d"]) for s in gt)),
                  classes_without_gt=absent, aug_roundtrip_max_error=roundtrip, table=table,
                  per_class=per_class, checks=[dict(check=c, passed=p) for c, p in checks],
                  passed=all(p for _, p in checks))
    write_json_atomic(out_dir / "scoring_checks.json", report)
    return report
