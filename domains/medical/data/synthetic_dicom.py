"""Synthetic radiographs written as a hospital's DICOM, for the MIMIC-CXR DICOM layout.

:func:`write_radiograph_dicom` stores an 8-bit picture the way CR / DX archives often
hold chest films: a DX "for presentation" object, 12 bits stored in MONOCHROME1 (bone
at low values), a rescale of slope 1 and a window over the whole 12-bit range, and
JPEG 2000 lossless compression (or uncompressed). Read back by
:func:`.dicom.read_dicom_image`, it shows the picture again to within a grey level.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless,
                         generate_uid)

from interlace.core.engine.atomic_files import atomic_write

__all__ = ["DX_FOR_PRESENTATION", "write_radiograph_dicom", "DicomCompression"]

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DicomCompression = Literal["jpeg2000", "rle", "none"]
_SYNTAXES = {"jpeg2000": JPEG2000Lossless, "rle": RLELossless, "none": None}
_VIEW_ORIENTATION = {"PA": ["L", "F"], "AP": ["R", "F"], "LATERAL": ["A", "F"],
                     "LL": ["A", "F"]}


def write_radiograph_dicom(path: str | Path, picture: np.ndarray, *, dicom_id: str,
                           subject_id: int, study_id: int, view: str,
                           compression: DicomCompression = "jpeg2000") -> Path:
    """Write an (H, W) uint8 picture (0 black, 255 white) as a MONOCHROME1 DX file.

    UIDs are derived from the ids, so the same call writes the same file.
    """
    if compression not in _SYNTAXES:
        raise ValueError(f"compression must be one of {list(_SYNTAXES)}, not {compression!r}")
    picture = np.asarray(picture)
    if picture.ndim != 2 or picture.dtype != np.uint8:
        raise ValueError(f"expected an (H, W) uint8 picture, got {picture.dtype} "
                         f"{picture.shape}")
    path = Path(path)
    sop_uid = generate_uid(entropy_srcs=[dicom_id])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PRESENTATION, sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(study_id)])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(study_id), view])
    ds.Modality, ds.PatientID, ds.StudyID = "DX", str(subject_id), str(study_id)[-8:]
    ds.ViewPosition = view
    ds.PatientOrientation = _VIEW_ORIENTATION.get(view, ["L", "F"])
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = picture.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PresentationLUTShape = "INVERSE"  # DX: MONOCHROME1's own inversion
    # 8 -> 12 bits (x 4095 / 255), then MONOCHROME1 stores the negative.
    stored = 4095 - np.round(picture.astype(np.float64) * (4095 / 255)).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    syntax = _SYNTAXES[compression]
    if syntax is not None:
        ds.compress(syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb", fsync=False) as handle:
        ds.save_as(handle, enforce_file_format=True)
    return path
