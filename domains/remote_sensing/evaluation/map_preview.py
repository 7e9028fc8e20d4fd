"""PNG preview: the class map (palette colours) next to an S2 true-colour composite and,
optionally, the reference (label) map."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image

from interlace.core.engine.atomic_files import atomic_path
from interlace.domains.remote_sensing.data.landcover import LANDCOVER_PALETTE

__all__ = ["true_colour", "save_map_preview"]


def true_colour(rgb: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """(3, H, W) reflectance (B04, B03, B02) -> (H, W, 3) uint8, stretched between the
    `low` and `high` percentiles of the non-zero pixels (zeros are nodata)."""
    rgb = np.asarray(rgb, np.float32)
    valid = rgb[rgb > 0]
    lo, hi = (np.percentile(valid, [low, high]) if valid.size else (0.0, 1.0))
    scaled = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
    return (scaled.transpose(1, 2, 0) * 255).astype(np.uint8)


def save_map_preview(path: str, class_map: np.ndarray, rgb: Optional[np.ndarray] = None,
                     palette: Sequence[Sequence[int]] = LANDCOVER_PALETTE,
                     nodata: int = 255, reference: Optional[np.ndarray] = None) -> str:
    """Write `path` (PNG): [true colour | class map | reference], atomically.

    Args:
        class_map: (H, W) class indices; `nodata` pixels are black.
        rgb: (3, H, W) reflectance in the order B04, B03, B02, or None (no panel).
        reference: (H, W) class indices of the ground truth, or None (no panel).
    """
    class_map = np.asarray(class_map)
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    lut[nodata] = 0
    panels = [lut[class_map.astype(np.uint8)]]
    if rgb is not None:
        panels.insert(0, true_colour(rgb))
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape != class_map.shape:
            raise ValueError(f"reference map is {reference.shape}, class map {class_map.shape}")
        panels.append(lut[reference.astype(np.uint8)])
    gap = np.full((class_map.shape[0], 4, 3), 255, np.uint8)
    image = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
