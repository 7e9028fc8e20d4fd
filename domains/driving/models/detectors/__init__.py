"""Driving detectors: DeepInteraction++ and the LiDAR-only (TransFusion-L) detector.
Importing this package registers ``LidarBEVEncoder``, ``LidarOnlyDetector`` and
``DeepInteractionDetector`` in ``MODELS``."""
from .batch_correspondence import (absent_camera_correspondence,  # noqa: F401
                                   build_batch_correspondence, hide_missing_views)
from .deep_interaction_detector import DeepInteractionDetector  # noqa: F401
from .detector_base import DrivingDetectorBase  # noqa: F401
from .lidar_bev_encoder import LidarBEVEncoder  # noqa: F401
from .lidar_only_detector import LidarOnlyDetector  # noqa: F401
from .modality_dropping import (MODALITIES, check_drop_modalities,  # noqa: F401
                                drop_camera_views, drop_modalities_from_inputs)
from .two_stage_init import MergeReport, merge_two_stage  # noqa: F401

__all__ = ["LidarBEVEncoder", "LidarOnlyDetector", "DeepInteractionDetector",
           "DrivingDetectorBase", "build_batch_correspondence", "absent_camera_correspondence",
           "hide_missing_views", "MODALITIES", "check_drop_modalities", "drop_camera_views",
           "drop_modalities_from_inputs", "MergeReport", "merge_two_stage"]
