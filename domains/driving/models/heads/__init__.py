"""Driving detection head (DeepInteraction++ / TransFusion): box coder, Hungarian
assigner, losses, heatmap targets and the head itself. Importing this package registers
``TransFusionBoxCoder`` and ``HungarianAssigner3D`` (TASK_UTILS) and
``InteractionDetectionHead``, ``FocalLoss``, ``GaussianFocalLoss``, ``L1Loss`` (MODELS)."""
from .assigner import AssignResult, HungarianAssigner3D, focal_classification_cost  # noqa: F401
from .box_coder import TransFusionBoxCoder  # noqa: F401
from .box_footprint import PredictedBoxFootprint  # noqa: F401
from .detection_head import DetectionHeadOutput, InteractionDetectionHead  # noqa: F401
from .heatmap_targets import (class_heatmap_targets, draw_gaussian,  # noqa: F401
                              gaussian_kernel, gaussian_radius)
from .losses import FocalLoss, GaussianFocalLoss, L1Loss, clip_sigmoid  # noqa: F401

__all__ = [
    "AssignResult", "HungarianAssigner3D", "focal_classification_cost", "TransFusionBoxCoder",
    "PredictedBoxFootprint", "DetectionHeadOutput", "InteractionDetectionHead",
    "class_heatmap_targets", "draw_gaussian", "gaussian_kernel", "gaussian_radius",
    "FocalLoss", "GaussianFocalLoss", "L1Loss", "clip_sigmoid",
]
