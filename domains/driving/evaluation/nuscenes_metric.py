"""`NuScenesMetric`: writes the nuScenes submission JSON and scores it with the devkit's
``DetectionEval`` (detection_cvpr_2019: mAP, NDS and the five TP errors).

Used as mmdet3d's metric of the same name is::

    val_evaluator = dict(type='NuScenesMetric', data_root='data/nuscenes',
                         ann_file='data/nuscenes/nuscenes_infos_val.pkl')

``tools/test.py CONFIG CKPT --format-only`` sets ``format_only=True``: the JSON is written
(for the test server) and nothing is scored.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os.path as osp
import tempfile
from typing import Any, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmengine.structures import BaseDataElement

from interlace.core.engine.registry import METRICS
from interlace.core.engine.safe_pickle import load_pickle

from ..data.nuscenes_names import CLASSES, SPLITS_OF_VERSION
from .submission import MAX_BOXES_PER_SAMPLE, SubmissionError, build_submission, write_submission

__all__ = ["NuScenesMetric", "default_eval_set", "split_sample_tokens", "run_detection_eval",
           "summary_to_metrics", "TP_ERROR_NAMES", "RESULT_FILE"]

RESULT_FILE = "results_nusc.json"  # mmdet3d's name
# The devkit's TP metric keys -> the names papers and mmdet3d report.
TP_ERROR_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE",
                  "vel_err": "mAVE", "attr_err": "mAAE"}


def default_eval_set(version: str) -> str:
    """The split a version is evaluated on: ``val`` for trainval, ``mini_val`` for mini,
    ``test`` for test (scores only on the server)."""
    splits = SPLITS_OF_VERSION.get(version)
    if splits is None:
        raise ValueError(f"unknown nuScenes version {version!r}; expected one of "
                         f"{sorted(SPLITS_OF_VERSION)}")
    return splits[-1]


def split_sample_tokens(nusc: Any, eval_set: str) -> set[str]:
    """The sample tokens ``DetectionEval`` evaluates for `eval_set` (predefined or a custom
    ``splits.json`` split), chosen by scene name as the devkit does."""
    from nuscenes.utils.splits import get_scenes_of_split

    scenes = set(get_scenes_of_split(eval_set, nusc))
    scene_names = {scene["token"]: scene["name"] for scene in nusc.scene}
    return {s["token"] for s in nusc.sample if scene_names[s["scene_token"]] in scenes}


def run_detection_eval(nusc: Any, result_path: str, eval_set: str, output_dir: str
                       ) -> tuple[dict, str]:
    """Run ``DetectionEval`` (detection_cvpr_2019) on `result_path`; it writes
    ``metrics_summary.json`` and ``metrics_details.json`` into `output_dir`.

    Returns:
        The metrics summary (as written) and the devkit's printed report.

    Raises:
        SubmissionError: the devkit rejected the file (its assertion, with the file named).
    """
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    report = io.StringIO()
    try:
        # DetectionEval.main prints its table even with verbose=False (kept for the log),
        # and its GT loader draws a tqdm bar on stderr (dropped).
        with contextlib.redirect_stdout(report), contextlib.redirect_stderr(io.StringIO()):
            evaluation = DetectionEval(nusc, config_factory("detection_cvpr_2019"),
                                       result_path, eval_set, output_dir, verbose=False)
            summary = evaluation.main(plot_examples=0, render_curves=False)
    except AssertionError as error:
        raise SubmissionError(f"{result_path}: DetectionEval rejected it: {error}") from None
    return summary, report.getvalue()


def summary_to_metrics(summary: dict, classes: Sequence[str] = CLASSES) -> dict[str, float]:
    """Flat metrics from a devkit metrics summary: ``mAP``, ``NDS``, ``mATE`` ... ``mAAE``
    and ``AP_<class>`` (mean over the four distance thresholds)."""
    metrics = {"mAP": float(summary["mean_ap"]), "NDS": float(summary["nd_score"])}
    for key, name in TP_ERROR_NAMES.items():
        metrics[name] = float(summary["tp_errors"][key])
    for name in (n for n in classes if n in summary["mean_dist_aps"]):
        metrics[f"AP_{name}"] = float(summary["mean_dist_aps"][name])
    return metrics


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _lidar_boxes(boxes: Any) -> np.ndarray:
    """``(N, 9)`` gravity-centre boxes from a tensor / array, or from an mmdet3d
    ``LiDARInstance3DBoxes`` (which keeps the bottom centre; use its gravity centre)."""
    if hasattr(boxes, "gravity_center") and hasattr(boxes, "tensor"):
        tensor = _to_numpy(boxes.tensor)
        return np.concatenate([_to_numpy(boxes.gravity_center), tensor[:, 3:]], axis=1)
    return np.asarray(_to_numpy(boxes), dtype=np.float64)


@METRICS.register_module()
class NuScenesMetric(BaseMetric):
    """nuScenes detection metric (submission export + devkit ``DetectionEval``).

    Args:
        data_root: the nuScenes root (holding ``v1.0-*/`` tables).
        ann_file: the info file of the evaluated split (absolute, or relative to
            `data_root`); it gives the version and fills in a sample's token and poses
            when the data sample lacks them (mmdet3d data samples carry ``sample_idx``).
        version: database version; default from the info file's ``metainfo``.
        eval_set: split to score; default ``val`` (trainval) / ``mini_val`` (mini).
        modality: the submission's ``meta`` flags.
        format_only: only write the submission JSON (e.g. for the test server).
        jsonfile_prefix: folder for the JSON and the devkit's outputs; default the run's
            work dir (a kept temporary folder outside a Runner).
        max_boxes_per_sample, too_many: see :func:`~.submission.sample_detections`.
        classes: label names of ``labels_3d``.
        collect_device, prefix: as in mmengine's ``BaseMetric``.

    A prediction is a data sample (or its dict) with ``pred_instances_3d`` holding
    ``bboxes_3d`` ``(N, 9)`` (gravity centre, LiDAR frame), ``scores_3d`` ``(N,)`` and
    ``labels_3d`` ``(N,)``, and ``token``, ``lidar2ego``, ``ego2global`` or
    ``sample_idx`` in its metainfo.
    """

    default_prefix = "nuscenes"

    def __init__(self, data_root: str, ann_file: str, version: Optional[str] = None,
                 eval_set: Optional[str] = None, modality: Optional[dict] = None,
                 format_only: bool = False, jsonfile_prefix: Optional[str] = None,
                 max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE, too_many: str = "truncate",
                 classes: Sequence[str] = CLASSES, collect_device: str = "cpu",
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.data_root = data_root
        self.ann_file = ann_file
        self.version = version
        self.eval_set = eval_set
        self.modality = dict(modality if modality is not None
                             else dict(use_lidar=True, use_camera=True))
        self.format_only = format_only
        self.jsonfile_prefix = jsonfile_prefix
        self.max_boxes_per_sample = max_boxes_per_sample
        self.too_many = too_many
        self.classes = tuple(classes)
        self._nusc = None  # loading a database takes long: keep it across evaluations

    # -- gathering ---------------------------------------------------------------------
    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep each sample's predictions (as CPU numpy) and its token / poses."""
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            pred = sample.get("pred_instances_3d")
            if pred is None:
                raise KeyError("NuScenesMetric: a data sample has no 'pred_instances_3d' "
                               f"(keys: {sorted(sample)})")
            if isinstance(pred, BaseDataElement):
                pred = pred.to_dict()
            self.results.append(dict(
                token=sample.get("token"), sample_idx=sample.get("sample_idx"),
                lidar2ego=_to_numpy(sample.get("lidar2ego")),
                ego2global=_to_numpy(sample.get("ego2global")),
                bboxes_3d=_lidar_boxes(pred["bboxes_3d"]),
                scores_3d=np.asarray(_to_numpy(pred["scores_3d"]), dtype=np.float64),
                labels_3d=np.asarray(_to_numpy(pred["labels_3d"]), dtype=np.int64)))

    # -- scoring -----------------------------------------------------------------------
    def _info_path(self) -> str:
        if osp.isfile(self.ann_file) or osp.isabs(self.ann_file):
            return self.ann_file
        joined = osp.join(self.data_root, self.ann_file)
        return joined if osp.isfile(joined) else self.ann_file

    def _load_infos(self) -> tuple[dict, list[dict]]:
        path = self._info_path()
        if not osp.isfile(path):
            raise FileNotFoundError(f"NuScenesMetric: info file not found: {path}")
        payload = load_pickle(path)  # plain data and numpy arrays only
        if not isinstance(payload, dict) or "data_list" not in payload:
            raise ValueError(f"{path}: not an mmdet3d v1.x info file (no 'data_list'); "
                             "convert v0.x infos with mmdet3d's update_infos_to_v2.py")
        return payload.get("metainfo", {}), payload["data_list"]

    def _complete(self, results: list[dict], infos: list[dict]) -> list[dict]:
        """Fill a result's missing token / poses from its info entry."""
        by_token = {info["token"]: info for info in infos}
        done = []
        for result in results:
            info = by_token.get(result["token"])
            if info is None and result.get("sample_idx") is not None:
                index = int(result["sample_idx"])
                info = infos[index] if 0 <= index < len(infos) else None
            if info is None and any(result.get(k) is None
                                    for k in ("token", "lidar2ego", "ego2global")):
                raise KeyError(f"NuScenesMetric: a prediction has token={result['token']!r}, "
                               f"sample_idx={result.get('sample_idx')!r}, neither found in "
                               f"{self._info_path()}")
            filled = dict(result)
            if info is not None:
                filled["token"] = filled["token"] or info["token"]
                if filled["lidar2ego"] is None:
                    filled["lidar2ego"] = info["lidar_points"]["lidar2ego"]
                if filled["ego2global"] is None:
                    filled["ego2global"] = info["ego2global"]
            done.append(filled)
        return done

    def _output_dir(self) -> str:
        if self.jsonfile_prefix:
            return self.jsonfile_prefix
        log_file = MMLogger.get_current_instance().log_file
        if log_file:  # <work_dir>/<timestamp>/<timestamp>.log under a Runner
            return osp.dirname(osp.dirname(osp.abspath(log_file)))
        return tempfile.mkdtemp(prefix="nuscenes_metric_")

    def _database(self, version: str) -> Any:
        if self._nusc is None or self._nusc.version != version:
            from nuscenes import NuScenes
            with contextlib.redirect_stdout(io.StringIO()):
                self._nusc = NuScenes(version=version, dataroot=self.data_root, verbose=False)
        return self._nusc

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Write ``results_nusc.json``; unless ``format_only``, score it with
        ``DetectionEval`` (which writes ``metrics_summary.json`` next to it)."""
        metainfo, infos = self._load_infos()
        version = self.version or metainfo.get("version")
        if version is None:
            raise ValueError(f"{self._info_path()}: metainfo has no 'version'; pass "
                             "NuScenesMetric(version=...)")
        eval_set = self.eval_set or default_eval_set(version)
        results = self._complete(results, infos)
        seen: set[str] = set()
        unique = [r for r in results if not (r["token"] in seen or seen.add(r["token"]))]
        if len(unique) != len(results):
            print_log(f"NuScenesMetric: {len(results) - len(unique)} duplicate predictions "
                      "(same sample token) dropped", logger="current", level=logging.WARNING)
        submission = build_submission(unique, self.modality, self.classes,
                                      max_boxes=self.max_boxes_per_sample,
                                      too_many=self.too_many)
        output_dir = self._output_dir()
        result_path = osp.join(output_dir, RESULT_FILE)
        if self.format_only:
            # Without the database at hand, the info file is the list of samples run.
            write_submission(submission, result_path, {info["token"] for info in infos})
            print_log(f"nuScenes submission written to {result_path} (format_only: not "
                      "scored)", logger="current")
            return {}
        nusc = self._database(version)
        write_submission(submission, result_path, split_sample_tokens(nusc, eval_set))
        summary, report = run_detection_eval(nusc, result_path, eval_set, output_dir)
        print_log(f"DetectionEval on {eval_set} ({version}), results in {output_dir}:\n"
                  + report, logger="current")
        return summary_to_metrics(summary, self.classes)
