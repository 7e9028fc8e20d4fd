"""Remote sensing models: SkySense pre-training and downstream segmentation / classification.

Importing this package registers in the ``interlace`` MODELS registry the spatial
backbones (``ConvSpatialEncoder``, ``ResNetSpatialEncoder``, ``ViTSpatialEncoder``,
``SwinSpatialEncoder``), ``TimeSeriesDataPreprocessor``, ``GeoContextPrototypes``,
``ObjectContrastiveLoss``, ``PrototypeDistillationLoss``, ``SkySensePretrainer``, the heads
(``SegmentationHead``, ``SceneClassificationHead``) and
``SkySenseSegmentor`` / ``SkySenseClassifier``; and ``EMATeacherHook`` in HOOKS. The
encoder itself (``FactorizedSpatioTemporalEncoder``) lives in ``interlace.core.temporal``.
"""
import interlace.core.alignment  # noqa: F401  registers InstanceContrastiveLoss (built by name)
import interlace.core.temporal  # noqa: F401  registers FactorizedSpatioTemporalEncoder

from .contrastive_views import ContrastiveViewSampler, ViewPair
from .data_preprocessor import TimeSeriesDataPreprocessor
from .downstream import SkySenseClassifier, SkySenseSegmentor
from .ema_teacher import cosine_momentum, ema_update_, make_teacher
from .geo_prototypes import GeoContextPrototypes
from .heads import SceneClassificationHead, SegmentationHead
from .hooks import EMATeacherHook
from .multi_granularity_losses import ObjectContrastiveLoss, dense_info_nce
from .pretrainer import SkySensePretrainer
from .prototype_distillation import PrototypeDistillationLoss
from .spatial_backbones import (ConvSpatialEncoder, ResNetSpatialEncoder, SwinSpatialEncoder,
                                ViTSpatialEncoder)

__all__ = [
    "ContrastiveViewSampler", "ViewPair", "TimeSeriesDataPreprocessor", "SkySenseClassifier",
    "SkySenseSegmentor", "cosine_momentum", "ema_update_", "make_teacher",
    "GeoContextPrototypes", "SceneClassificationHead", "SegmentationHead", "EMATeacherHook",
    "ObjectContrastiveLoss", "dense_info_nce", "PrototypeDistillationLoss", "SkySensePretrainer", "ConvSpatialEncoder",
    "ResNetSpatialEncoder", "SwinSpatialEncoder", "ViTSpatialEncoder",
]
