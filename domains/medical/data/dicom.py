"""DICOM radiographs read as a radiologist sees them, on the 0-255 scale of a JPG.

:func:`read_dicom_image` decodes one frame with pydicom (compressed transfer syntaxes
through the pylibjpeg plugins: JPEG baseline, 12-bit extended and lossless, JPEG-LS,
JPEG 2000; RLE natively) and applies the display chain of DICOM PS3.4 N.2 with pydicom's
own functions:

* grayscale (MONOCHROME1 / MONOCHROME2, 1-bit images included): the modality LUT
  (``apply_modality_lut``: rescale slope and intercept, or a Modality LUT Sequence), then
  the VOI LUT (``apply_voi_lut``: the first VOI LUT Sequence item, else the first window
  centre / width). The output range of that chain is mapped onto [0, 255]. MONOCHROME1
  stores bone as low values, so it is inverted (as is MONOCHROME2 with a Presentation LUT
  Shape of INVERSE): bone is bright in both, as on a JPG.
* PALETTE COLOR: ``apply_color_lut``, then the luminance of the RGB it gives;
* RGB, YBR_FULL / YBR_FULL_422 (converted to RGB by pydicom's decoders) and YBR_ICT /
  YBR_RCT (JPEG 2000, RGB once decoded): luminance.

Luminance is :func:`.luminance.rgb_to_luminance`, the formula colour JPG / PNG files go
through, so a colour DICOM and the same picture as a PNG load alike.

The range mapped onto [0, 255], fixed per file wherever the file says it:

* a VOI LUT Sequence: its lowest and highest entry (descriptors often declare 16 bits
  for 12-bit entries, so the declared depth would darken the image);
* a window: pydicom's window output range (its ``y_min`` .. ``y_max``);
* no VOI: ``no_window='min_max'`` (default) the image's own minimum and maximum after the
  modality LUT, as a viewer shows a radiograph that carries no window; ``'stored_range'``
  every value the stored bits can hold, through the modality LUT;
* colour: 0 .. 2**bits - 1 of the samples (for a palette, of its entries).

Not applied: Presentation LUT Sequences, ICC profiles, pixel padding (padding values
take part in ``min_max``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import (apply_color_lut, apply_modality_lut, apply_voi, apply_voi_lut,
                            apply_windowing, as_pixel_options, get_decoder)
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .image_errors import ImageLoadError
from .luminance import rgb_to_luminance

__all__ = ["DICOM_SUFFIXES", "NoWindow", "read_dicom_image", "number_of_frames",
           "is_dicom_file", "RGB_PHOTOMETRICS", "GRAYSCALE_PHOTOMETRICS"]

DICOM_SUFFIXES = (".dcm", ".dicom")
NoWindow = Literal["min_max", "stored_range"]
GRAYSCALE_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
# Decoded to RGB samples by pydicom's decoders (YBR_FULL*: as_rgb; YBR_ICT / YBR_RCT:
# the JPEG 2000 codec undoes its colour transform).
RGB_PHOTOMETRICS = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


# Pictures Pillow reads; any other name (none, or a UID's last digits as archives name
# files) is checked for the DICOM preamble.
_PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def is_dicom_file(path: str | Path) -> bool:
    """A ``.dcm`` / ``.dicom`` name, or a file of another name (``IM0001``,
    ``1.2.840.113619.2.55.3.1``) whose bytes 128-131 are ``DICM``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in _PICTURE_SUFFIXES:
        return False
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def number_of_frames(ds: Dataset) -> int:
    """Frames in the pixel data (1 when Number of Frames is absent, empty or 0)."""
    return int(as_pixel_options(ds)["number_of_frames"])


def read_dicom_image(path: str | Path, *, frame: int | None = None,
                     no_window: NoWindow = "min_max") -> np.ndarray:
    """One frame of a DICOM file as the displayed grayscale image.

    Args:
        path: the DICOM file.
        frame: which frame of a multi-frame file (0-based). ``None`` accepts single-frame
            files only, so a cine loop or a tomosynthesis stack is never read as its
            first frame by accident.
        no_window: the range shown when the file has no VOI LUT or window (module
            docstring).

    Returns:
        (H, W) float32 in [0, 255]: 0 black, 255 white, as the file is meant to be seen.

    Raises:
        ImageLoadError: naming the file and the problem (unreadable, no pixel data,
            multi-frame without ``frame``, frame out of range, no codec for the transfer
            syntax, an unsupported colour space, LUTs that cannot be applied).
    """
    if no_window not in ("min_max", "stored_range"):
        raise ValueError(f"no_window must be 'min_max' or 'stored_range', not {no_window!r}")
    path = Path(path)
    ds = _read_dataset(path)
    if not any(tag in ds for tag in _PIXEL_TAGS):
        raise ImageLoadError(f"{path}: DICOM has no pixel data (no PixelData element)")
    stored, photometric = _decode_frame(path, ds, frame)
    try:
        if photometric in GRAYSCALE_PHOTOMETRICS:
            return _grayscale_display(ds, stored, photometric, no_window)
        return _colour_display(path, ds, stored, photometric)
    except ImageLoadError:
        raise
    except Exception as error:  # pydicom raises ValueError / NotImplementedError / ...
        raise ImageLoadError(f"{path}: cannot apply the DICOM display LUTs to its "
                             f"{photometric} pixels ({type(error).__name__}: {error})"
                             ) from error


def _read_dataset(path: Path) -> Dataset:
    """The dataset of `path`, also when it lacks the 128-byte preamble and file meta (old
    ACR-NEMA style exports): pydicom then guesses the encoding, which names the transfer
    syntax of its uncompressed pixels."""
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as first:
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:
            ds = None
        if ds is None or not any(tag in ds for tag in _PIXEL_TAGS) or "Rows" not in ds:
            raise ImageLoadError(f"{path}: not a readable DICOM file ({first})") from first
    except Exception as error:
        raise ImageLoadError(f"{path}: not a readable DICOM file ({error})") from error
    implicit, little = ds.original_encoding
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else
                                          ExplicitVRBigEndian)
    return ds


def _decode_frame(path: Path, ds: Dataset, frame: int | None) -> tuple[np.ndarray, str]:
    """The stored samples of one frame and the photometric interpretation they are in."""
    frames = number_of_frames(ds)
    if frame is None and frames > 1:
        raise ImageLoadError(f"{path}: multi-frame DICOM with {frames} frames; a radiograph "
                             f"is one image, so pick one with frame=0..{frames - 1}")
    index = 0 if frame is None else int(frame)
    if not 0 <= index < frames:
        raise ImageLoadError(f"{path}: frame {frame} requested but the file has {frames} "
                             f"frame{'s' if frames > 1 else ''} (0..{frames - 1})")
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if syntax is None:
        raise ImageLoadError(f"{path}: DICOM file meta has no Transfer Syntax UID, so its "
                             f"pixel data cannot be decoded")
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageLoadError(f"{path}: pixel data in transfer syntax {syntax.name} "
                             f"({syntax}), which pydicom cannot decode") from None
    if not decoder.is_available:
        raise ImageLoadError(f"{path}: no installed codec for {syntax.name} ({syntax}); "
                             f"pydicom's plugins need: {'; '.join(decoder.missing_dependencies)}")
    try:
        stored, meta = decoder.as_array(ds, index=index, validate=True,
                                        **as_pixel_options(ds))
    except Exception as error:
        raise ImageLoadError(f"{path}: cannot decode its {syntax.name} pixel data "
                             f"({type(error).__name__}: {error})") from error
    photometric = str(meta.get("photometric_interpretation",
                               ds.get("PhotometricInterpretation", ""))).strip().upper()
    return stored, photometric


def _stored_bounds(ds: Dataset) -> tuple[int, int]:
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def _voi_kind(ds: Dataset) -> str | None:
    """Which VOI transform ``apply_voi_lut`` applies: ``'lut'`` (preferred), ``'window'``."""
    sequence = ds.get("VOILUTSequence")
    if sequence and all(sequence[0].get(k) is not None for k in ("LUTDescriptor", "LUTData")):
        return "lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return None


def _grayscale_display(ds: Dataset, stored: np.ndarray, photometric: str,
                       no_window: NoWindow) -> np.ndarray:
    values = apply_modality_lut(stored, ds)
    voi = _voi_kind(ds)
    if voi == "lut":
        # A VOI LUT is indexed by the modality output; a rescale (slope 1, intercept 0
        # on CR) gives floats, which pydicom would truncate with a warning: round them.
        if not np.issubdtype(values.dtype, np.integer):
            values = np.round(values).astype(np.int64)
        values = apply_voi_lut(values, ds)
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        entries = apply_voi(np.arange(descriptor[1], descriptor[1] + (descriptor[0] or 2 ** 16)),
                            ds)
        low, high = float(entries.min()), float(entries.max())
    elif voi == "window":
        values = apply_voi_lut(values, ds)
        with np.errstate(over="ignore"):  # the far ends of a sigmoid window
            ends = apply_windowing(np.array([-1e300, 1e300]), ds)
        low, high = float(ends[0]), float(ends[1])
    else:
        low, high = _stored_range_display(ds)
        if no_window == "min_max" and values.max() > values.min():
            low, high = float(values.min()), float(values.max())
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    invert = photometric == "MONOCHROME1" or shape == "INVERSE"
    return _scale(values, low, high, invert)


def _stored_range_display(ds: Dataset) -> tuple[float, float]:
    """Every value the stored bits can hold, through the modality LUT."""
    lo, hi = _stored_bounds(ds)
    probe = np.arange(lo, hi + 1) if hi - lo < 2 ** 17 else np.array([lo, hi])
    mapped = apply_modality_lut(probe, ds)
    return float(mapped.min()), float(mapped.max())


def _colour_display(path: Path, ds: Dataset, stored: np.ndarray,
                    photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)[..., :3]  # RGBA palettes: alpha is not colour
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    elif photometric in RGB_PHOTOMETRICS:
        rgb = stored
        bits = int(ds.BitsStored)
    else:
        raise ImageLoadError(
            f"{path}: colour DICOM in photometric interpretation {photometric!r}, which "
            f"is not read (PALETTE COLOR, {', '.join(RGB_PHOTOMETRICS)} and grayscale are)")
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ImageLoadError(f"{path}: colour DICOM ({photometric}) decoded to shape "
                             f"{rgb.shape}, not (rows, columns, 3) RGB samples")
    return _scale(rgb_to_luminance(rgb), 0.0, float(2 ** bits - 1), invert=False)


def _scale(values: np.ndarray, low: float, high: float, invert: bool) -> np.ndarray:
    """``values`` on [low, high] to float32 [0, 255], clipped, optionally inverted."""
    span = high - low if high > low else 1.0
    out = np.clip((np.asarray(values, np.float64) - low) * (255.0 / span), 0.0, 255.0)
    if invert:
        out = 255.0 - out
    return out.astype(np.float32)
