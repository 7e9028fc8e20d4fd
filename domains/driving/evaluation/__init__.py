"""Driving evaluation: nuScenes submission export and DetectionEval scoring.

- :mod:`.box_frames`: LiDAR-frame boxes <-> global nuScenes boxes.
- :mod:`.submission`: build, validate and atomically write the submission JSON.
- :mod:`.nuscenes_metric`: ``NuScenesMetric`` (registered in ``METRICS``), which writes the
  JSON and scores it with the devkit's ``DetectionEval``.
- :mod:`.visualization`: BEV + six-camera rendering of GT and predicted boxes.
- :mod:`.scoring_checks`: GT / augmented GT / random / shifted boxes through the export
  and DetectionEval, with known expected scores
  (``tools/analysis_tools/check_nuscenes_scoring.py``).
"""
from .box_frames import global_to_lidar, lidar_to_global
from .nuscenes_metric import NuScenesMetric, run_detection_eval, split_sample_tokens
from . import inference_io  # noqa: F401  registers the batch-inference reader and writer
from .submission import (MAX_BOXES_PER_SAMPLE, SubmissionError, build_submission,
                         load_submission, sample_detections, validate_submission,
                         write_submission)

__all__ = ["NuScenesMetric", "SubmissionError", "MAX_BOXES_PER_SAMPLE", "build_submission",
           "sample_detections", "validate_submission", "write_submission", "load_submission",
           "lidar_to_global", "global_to_lidar", "run_detection_eval", "split_sample_tokens"]
