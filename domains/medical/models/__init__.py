"""Medical models: MGCA image-report pre-training (encoders, projection heads, model).

Importing this package registers ``ResNetImageEncoder``, ``ViTImageEncoder``,
``ReportTextEncoder``, ``ProjectionHead``, ``CxrReportDataPreprocessor`` and ``MGCA`` in
``MODELS``, ``PrototypeFreezeHook`` in ``HOOKS`` and ``collate_image_reports`` in
``FUNCTIONS`` (scope ``interlace``), and the released MGCA checkpoint layout as ``mgca``
in ``interlace.core.engine.weight_key_maps.CHECKPOINT_MAPS``.
"""
import interlace.core.alignment  # noqa: F401  registers the losses MGCA builds by name

from .data_preprocessor import CxrReportDataPreprocessor, collate_image_reports
from .hooks import PrototypeFreezeHook
from .image_encoders import ImageFeatures, ResNetImageEncoder, ViTImageEncoder
from .mgca import MGCA
from .projection import ProjectionHead
from .published_weights import load_mgca_weights
from .segmentation import CxrSegmenter
from .text_encoder import ReportFeatures, ReportTextEncoder, build_wordpiece_tokenizer

__all__ = [
    "CxrReportDataPreprocessor", "collate_image_reports", "PrototypeFreezeHook", "ImageFeatures", "ResNetImageEncoder",
    "ViTImageEncoder", "MGCA", "ProjectionHead", "ReportFeatures", "ReportTextEncoder",
    "build_wordpiece_tokenizer", "CxrSegmenter", "load_mgca_weights",
]
