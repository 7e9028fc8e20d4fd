"""Writers of small rasters and vector files in the layouts users download (test helpers)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import rasterio
from affine import Affine

from interlace.domains.remote_sensing.data import S2_BANDS

UTM32 = "EPSG:32632"


def write_raster(path: Path, data: np.ndarray, transform: Affine, crs: str = UTM32,
                 nodata: Optional[float] = None, descriptions: Sequence[str] = (),
                 driver: str = "GTiff") -> Path:
    """Write (C, H, W) or (H, W) `data`; JP2 losslessly (``REVERSIBLE``, quality 100)."""
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    options = dict(REVERSIBLE="YES", QUALITY="100") if driver == "JP2OpenJPEG" else {}
    with rasterio.open(path, "w", driver=driver, width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata, **options) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions):
            dst.set_band_description(i + 1, name)
    return path


def write_s2_multiband(path: Path, transform: Affine, size: int, value: int = 1000,
                       scl: Optional[np.ndarray] = None) -> np.ndarray:
    """One S2 date as the default layout's 11-band file (10 bands + SCL, descriptions);
    band k holds ``value + 100 k + 7 col`` (a half-pixel shift would change every value,
    also after rounding to integers). Returns the (11, H, W) data."""
    cols = 7 * np.arange(size, dtype=np.uint16)[None, None, :]
    bands = np.stack([np.full((size, size), value + 100 * k, np.uint16) for k in range(10)])
    bands = bands + cols
    scl = np.full((1, size, size), 4, np.uint16) if scl is None else scl[None].astype(np.uint16)
    data = np.concatenate([bands, scl])
    write_raster(path, data, transform, nodata=0, descriptions=(*S2_BANDS, "SCL"))
    return data
