"""Step kinds of the driving check that measure velocity and direction of travel, beyond
the devkit's mAVE / mAOE averages:

* ``motion``: the motion diagnosis of a test step's submission (moving / parked objects'
  direction accuracy and velocity error, against a 0 m/s baseline);
* ``lag_reversal``: a checkpoint scored again with the sweeps' time lags reversed
  (``ReverseTimeLag``), through the same Runner test path as a ``test`` step; how much
  moving vehicles' predicted velocity changes says whether the model uses the lag;
* ``voxel_coverage``: share of in-range points that voxelisation keeps, and the sweeps'
  share before / after it, in the train and test pipelines of the check's configs;
* ``gt_as_predictions``: the val GT exported as a submission and scored, so a broken
  export of headings or velocities fails the check.

Each calls the package function that the matching ``tools/analysis_tools/`` entry point
calls, so a step's figures are the ones a user's command gives.
"""
from __future__ import annotations

import contextlib
import io
import math
import os.path as osp
from typing import Any, Optional, Sequence

from .steps import _load, test_step

__all__ = ["motion_step", "lag_reversal_step", "voxel_coverage_step",
           "gt_as_predictions_step", "STEP_KINDS", "submission_of"]

# Report rows and keys turned into flat metrics (``<row>_<key>``). The groups get every
# key; single classes the four that a threshold or the model zoo might name.
_GROUP_KEYS = ("moving_dir_acc", "parked_dir_acc", "moving_vel_err", "moving_zero_vel_err",
               "moving_speed_ratio", "parked_vel_err", "moving", "parked")
_CLASS_KEYS = ("moving_dir_acc", "parked_dir_acc", "moving_vel_err", "moving_zero_vel_err")


def _nuscenes(context: dict, data_root: Optional[str] = None,
              version: Optional[str] = None) -> tuple[Any, str]:
    """The devkit database of the check's data (or `data_root` / `version`) and its
    version, loaded once per check run (a cache in the context, not in the report)."""
    root = data_root or context["data"]["root"]
    version = version or context["data"]["version"]
    cache = context.setdefault("cache", {})
    if ("nusc", root, version) not in cache:
        from nuscenes import NuScenes
        with contextlib.redirect_stdout(io.StringIO()):  # the devkit prints table sizes
            cache[("nusc", root, version)] = NuScenes(version=version, dataroot=root,
                                                      verbose=False)
    return cache[("nusc", root, version)], version


def _eval_set(version: str, eval_set: Optional[str]) -> str:
    from interlace.domains.driving.evaluation.nuscenes_metric import default_eval_set
    return eval_set or default_eval_set(version)


def submission_of(context: dict, test: str) -> str:
    """The ``results_nusc.json`` that the test step named `test` wrote (NuScenesMetric
    writes it into the run's work dir); a step that did not run in this check run (e.g.
    ``--only``) is looked up in its default work dir, ``<out>/<test>``."""
    outcome = context["steps"].get(test)
    return _result_file(outcome["work_dir"] if outcome else osp.join(context["out"], test),
                        f"test step {test!r}")


def _result_file(work_dir: str, what: str) -> str:
    """``<work_dir>/results_nusc.json``, which must exist."""
    from interlace.domains.driving.evaluation.nuscenes_metric import RESULT_FILE
    path = osp.join(work_dir, RESULT_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(f"no submission of {what} at {path}: run that step first "
                                "(in this check run or an earlier one with the same --out)")
    return path


def motion_step(name: str, context: dict, test: str, eval_set: Optional[str] = None,
                dist_th: Optional[float] = None, min_score: float = 0.0,
                classes: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """``motion_diagnosis`` of the submission of test step `test`.

    Metrics ``<row>_<key>`` for the groups ``vehicle`` and ``all`` (every key of a report
    row: ``moving_dir_acc``, ``parked_dir_acc``, ``moving_vel_err``,
    ``moving_zero_vel_err``, ``moving_speed_ratio``, ``parked_vel_err`` and the counts
    ``moving`` / ``parked``) and for each of `classes` (default: the eight moving classes;
    the four accuracy / error keys). A value the report leaves empty (no moving or no
    parked object matched) is left out, so a threshold on it fails naming it.
    The whole report goes to ``<out>/<name>/motion_report.json``.
    """
    from interlace.domains.driving.evaluation.motion_diagnosis import (
        DEFAULT_DIST_TH, MOTION_CLASSES, motion_diagnosis, write_report)
    path = submission_of(context, test)
    nusc, version = _nuscenes(context)
    report = motion_diagnosis(nusc, path, _eval_set(version, eval_set),
                              dist_th=DEFAULT_DIST_TH if dist_th is None else dist_th,
                              min_score=min_score)
    metrics: dict[str, float] = {}
    rows = [(group, report["groups"][group], _GROUP_KEYS) for group in ("vehicle", "all")]
    rows += [(cls, report["classes"][cls], _CLASS_KEYS)
             for cls in (classes if classes is not None else MOTION_CLASSES)]
    for row_name, row, keys in rows:
        for key in keys:
            if row.get(key) is not None:
                metrics[f"{row_name}_{key}"] = float(row[key])
    report_file = osp.join(context["out"], name, "motion_report.json")
    write_report(report, report_file)
    return dict(test=test, submission=path, report_file=report_file, metrics=metrics)


def lag_reversal_step(name: str, context: dict, config: str, checkpoint: str,
                      reference: Optional[str] = None, window: Optional[float] = None,
                      dist_th: Optional[float] = None,
                      classes: Optional[Sequence[str]] = None,
                      cfg_options: Optional[dict] = None) -> dict[str, Any]:
    """Score `config` with the checkpoint of train step `checkpoint` with ``ReverseTimeLag``
    (lag ``t -> W - t``, see ``domains/driving/data/transforms/time_lag.py``) right after
    the sweep loader of its test pipeline, as a ``test`` step with that one extra
    ``--cfg-options`` would, and compare moving vehicles' velocities with the normal run.

    Args:
        reference: the test step whose submission is the normal run: it must score the
            same config and checkpoint (the check's ``fusion_test``). None runs the normal
            test here too, in ``<out>/<name>/normal``.
        window: ``ReverseTimeLag``'s window (None: each cloud's largest lag).
        dist_th: match distance (m), default the devkit's middle threshold, 2 m.
        classes: classes whose moving objects count (default the vehicle classes).

    Metrics: ``velocity_change`` (mean over matched moving vehicles of ``|v_rev - v_norm|
    / |v_norm|``), its median and pooled form, ``turned_share``, the mean speeds and the
    components along the GT direction of travel, ``pairs``; and the reversed run's devkit
    figures as ``reversed_<metric>`` (mAP, NDS, mAVE, mAOE).
    """
    from interlace.domains.driving.evaluation.lag_reversal import (find_pipeline,
                                                                   lag_reversal,
                                                                   with_reversed_lags)
    from interlace.domains.driving.evaluation.motion_diagnosis import (DEFAULT_DIST_TH,
                                                                       VEHICLE_CLASSES)
    if reference is None:
        normal = test_step(f"{name}_normal", context, config, checkpoint,
                           cfg_options=cfg_options,
                           work_dir=osp.join(context["out"], name, "normal"))
        normal_path = _result_file(normal["work_dir"], f"{name}'s normal run")
    else:
        normal_path = submission_of(context, reference)
    # The test pipeline as the test step would load it, reversed, as one more override.
    pipeline_key, pipeline = find_pipeline(_load(config, context, cfg_options, None)[0])
    options = dict(cfg_options or {}, **{pipeline_key: with_reversed_lags(pipeline, window)})
    outcome = test_step(name, context, config, checkpoint, cfg_options=options,
                        work_dir=osp.join(context["out"], name))
    reversed_path = _result_file(outcome["work_dir"], f"{name}'s reversed run")
    nusc, version = _nuscenes(context)
    change = lag_reversal(nusc, normal_path, reversed_path, _eval_set(version, None),
                          classes=tuple(classes) if classes is not None else VEHICLE_CLASSES,
                          dist_th=DEFAULT_DIST_TH if dist_th is None else dist_th)
    metrics = {k: v for k, v in change.items() if v is not None}
    metrics.update({f"reversed_{k}": outcome["metrics"][k] for k in ("mAP", "NDS", "mAVE",
                                                                     "mAOE")
                    if k in outcome["metrics"]})
    return dict(config=config, checkpoint=outcome["checkpoint"], reference=reference,
                normal_submission=normal_path, reversed_submission=reversed_path,
                window=window, metrics=metrics)


def voxel_coverage_step(name: str, context: dict, configs: dict[str, str],
                        samples: int = 8, splits: Sequence[str] = ("train", "test"),
                        seed: int = 0) -> dict[str, Any]:
    """``measure_coverage`` of each config (``{label: config path}``) over `samples`
    samples of each split's pipeline, through the config's own data preprocessor.

    Metrics: ``min_kept_share`` (the lowest share of in-range points kept, over configs and
    splits) and ``max_abs_sweep_shift`` (the largest |sweep share after - before|), then
    per config and split ``<label>_<split>_kept_share`` and ``_sweep_shift``. A split
    without sweep points has no shift, and then no ``max_abs_sweep_shift`` either.
    """
    from interlace.domains.driving.evaluation.voxel_coverage import measure_coverage
    detail: dict[str, float] = {}
    kept, shifts, missing = [], [], False
    tables = {}
    for label, config in dict(configs).items():
        cfg, _ = _load(config, context, None, None)
        tables[label] = measure_coverage(cfg, num_samples=samples, splits=tuple(splits),
                                         seed=seed)
        for split, row in tables[label].items():
            if row["kept_share"] is not None:
                detail[f"{label}_{split}_kept_share"] = row["kept_share"]
                kept.append(row["kept_share"])
            if row["sweep_shift"] is None:
                missing = True
            else:
                detail[f"{label}_{split}_sweep_shift"] = row["sweep_shift"]
                shifts.append(abs(row["sweep_shift"]))
    metrics: dict[str, float] = {}
    if kept:
        metrics["min_kept_share"] = min(kept)
    if shifts and not missing:
        metrics["max_abs_sweep_shift"] = max(shifts)
    metrics.update(detail)
    return dict(configs=dict(configs), samples=samples, coverage=tables, metrics=metrics)


def gt_as_predictions_step(name: str, context: dict,
                           info_file: str = "nuscenes_infos_val.pkl",
                           eval_set: Optional[str] = None) -> dict[str, Any]:
    """The GT boxes of `info_file` (under the check's data root) exported as a submission
    (score 1, the info file's velocities) and scored with ``DetectionEval``, as
    ``tools/analysis_tools/check_nuscenes_scoring.py`` does for its ``gt`` case.

    Metrics: the devkit's ``mAP``, ``NDS`` and TP errors, and the same over the classes
    with GT in the split (``*_present``; a TP error the devkit leaves undefined for a class,
    e.g. velocity for barriers and cones, is left out: ``mAVE_present`` is the mean over
    the classes that have a GT velocity). Submission and summary go to ``<out>/<name>/``.
    """
    from interlace.domains.driving.data.info_files import load_info_file
    from interlace.domains.driving.evaluation.nuscenes_metric import (run_detection_eval,
                                                                      split_sample_tokens,
                                                                      summary_to_metrics)
    from interlace.domains.driving.evaluation.scoring_checks import (COLUMNS, gt_predictions,
                                                                     present_class_metrics)
    from interlace.domains.driving.evaluation.submission import (build_submission,
                                                                 write_submission)
    nusc, version = _nuscenes(context)
    split = _eval_set(version, eval_set)
    _, infos = load_info_file(osp.join(context["data"]["root"], info_file))
    submission = build_submission(gt_predictions(infos), dict(use_lidar=True))
    present = sorted({box["detection_name"] for boxes in submission["results"].values()
                      for box in boxes})
    out_dir = osp.join(context["out"], name)
    path = write_submission(submission, osp.join(out_dir, "results_nusc.json"),
                            split_sample_tokens(nusc, split))
    summary, _ = run_detection_eval(nusc, str(path), split, out_dir)
    devkit = summary_to_metrics(summary)
    metrics = dict(present_class_metrics(summary, present))
    metrics.update({key: devkit[key] for key in COLUMNS})
    # NaN (no class defines the error) is left out: a threshold on it fails naming it.
    metrics = {key: value for key, value in metrics.items() if math.isfinite(value)}
    metrics["classes_present"] = float(len(present))
    return dict(submission=str(path), eval_set=split, classes_present=present,
                metrics=metrics)


STEP_KINDS = dict(motion=motion_step, lag_reversal=lag_reversal_step,
                  voxel_coverage=voxel_coverage_step, gt_as_predictions=gt_as_predictions_step)
