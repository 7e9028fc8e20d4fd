"""Colour to grayscale, one formula for JPG / PNG and DICOM.

A colour chest X-ray (a screenshot, a scanned film, a PALETTE COLOR or RGB / YBR DICOM)
becomes its luminance with ITU-R BT.601 weights, in Pillow's fixed point:
``L = (19595 R + 38470 G + 7471 B + 32768) >> 16``, which is what ``Image.convert('L')``
computes for 8-bit RGB. :func:`rgb_to_luminance` applies it to samples of any bit depth
(DICOM palettes are often 16-bit), so a colour DICOM and the same picture saved as a
colour PNG load to the same grayscale values.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["LUMA_WEIGHTS", "rgb_to_luminance", "pil_to_grayscale", "COLOUR_MODES"]

# Pillow's BT.601 luma weights (out of 65536; they sum to 65536, so white stays white).
LUMA_WEIGHTS = (19595, 38470, 7471)
# Pillow modes that hold colour; the others (L, I;16, F, 1, LA) are already grayscale.
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr")


def rgb_to_luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance of RGB samples.

    Args:
        rgb: (..., 3) array, integer (any bit depth) or float.

    Returns:
        (...) array: for integer input int64, rounded as Pillow rounds (equal to
        ``Image.convert('L')`` on 8-bit data); for float input float64, unrounded.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (..., 3) RGB samples, got shape {rgb.shape}")
    if np.issubdtype(rgb.dtype, np.integer):
        channels = rgb.astype(np.int64)
        weighted = sum(channels[..., i] * weight for i, weight in enumerate(LUMA_WEIGHTS))
        return (weighted + 0x8000) >> 16
    return rgb.astype(np.float64) @ (np.array(LUMA_WEIGHTS, dtype=np.float64) / 65536.0)


def pil_to_grayscale(image: Image.Image) -> Image.Image:
    """A PIL image as 8-bit grayscale (mode ``L``); colour through :func:`rgb_to_luminance`.

    Module-level (not a lambda) so a reader using it pickles into DataLoader workers.
    """
    if image.mode in COLOUR_MODES:
        rgb = np.asarray(image.convert("RGB"))
        return Image.fromarray(rgb_to_luminance(rgb).astype(np.uint8))  # 2D uint8: mode L
    return image.convert("L")
