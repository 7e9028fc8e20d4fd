"""Medical data: MIMIC-CXR(-JPG) / CheXpert readers, DICOM display, report cleaning, CXR
transforms.

Importing this package registers ``MimicCxrDataset`` and ``ChexpertDataset`` in
``DATASETS`` and the CXR transforms in ``TRANSFORMS`` (scope ``interlace``).
"""
from .chexpert import (CHEXPERT_LABELS, ChexpertRecord, LabelFileError,
                       apply_uncertainty_policy, read_chexpert_csv)
from .chexpert_dataset import ChexpertDataset
from .dicom import read_dicom_image
from .mimic import FRONTAL_VIEWS, MimicCxrDataset, MimicCxrIndex, MimicIndex, MimicRecord
from .reports import clean_report, report_text, section_report
from .synthetic import make_synthetic_mimic
from .segmentation import CxrSegmentationDataset, MaskSizeError, build_segmentation_transforms
from .transforms import (CxrCropd, CxrNormalized, ImageLoadError, LoadCxrImaged,
                         ResizeLongestPadd, build_cxr_transforms)

__all__ = [
    "CHEXPERT_LABELS", "ChexpertRecord", "LabelFileError", "apply_uncertainty_policy",
    "read_chexpert_csv", "ChexpertDataset", "read_dicom_image", "FRONTAL_VIEWS",
    "MimicCxrDataset", "MimicCxrIndex", "MimicIndex", "MimicRecord", "clean_report",
    "report_text", "section_report", "make_synthetic_mimic",
    "CxrCropd", "CxrNormalized", "ImageLoadError", "LoadCxrImaged", "ResizeLongestPadd",
    "build_cxr_transforms", "CxrSegmentationDataset", "MaskSizeError",
    "build_segmentation_transforms",
]
