"""A small synthetic Sentinel-1/2 land-cover set written as real GeoTIFFs.

``make_synthetic_s1s2(out, tiles, size, dates, seed)`` writes the layout that
``SentinelTimeSeriesDataset`` reads by default (see its module), with:

- UTM CRS, 10 m pixels; tile 3 (and every third after) in EPSG:32631, the others in
  EPSG:32632; tile 2's S1 on a 20 m grid, so both WarpedVRT paths (CRS, resolution)
  are exercised when the data are read on one grid.
- S2 L2A: 10 bands + SCL per date, uint16 reflectance x 10000, nodata 0, band
  descriptions, ``ACQUISITION_DATE`` tag; clouds drawn into the bands (bright cloud,
  cirrus haze, dark shadow) and recorded in SCL (3, 8, 9, 10); the first date is always
  clear; tile 2 has a no-data strip (orbit edge) on its fourth date.
- S1 GRD: VV, VH float32 dB with speckle, nodata -9999, dates two days after S2's.
- Labels: uint8 with a colour table, 255 = no data. Classes (:mod:`.landcover`) differ in
  seasonal vegetation curve (crops green up around doy 105 or 165, forest green all
  year) and in SAR (urban bright in VV, water dark); the two crops look the same outside
  their growing seasons. Every parcel, tile and date varies (:mod:`.synthetic_surface`:
  green-up day, season length, soil, canopy, moisture, climate shift, atmosphere), so a
  class is a spread of curves, not one.
- A marker on every tile: an 8 x 8 px urban square of constant bright reflectance (0.9
  in every band) ringed by 2 px of water, at pixel (row, col) = (size // 4, size // 4);
  ``synthetic_truth.json`` gives its centre in pixels, map and WGS84 coordinates.
- Tile 1 has a 5 m high-resolution RGBN image (uint8).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform as warp_points

from .bands import S1_BANDS, S1_NODATA, S2_BANDS, S2_SCALE
from .landcover import LANDCOVER_CLASSES, LANDCOVER_PALETTE, colormap_of
from .synthetic_surface import MARKER_SIZE, URBAN, WATER, Surface, make_surface, smooth_field

__all__ = ["make_synthetic_s1s2", "TRUTH_JSON", "TILE_SITES", "MARKER_SIZE"]

TRUTH_JSON = "synthetic_truth.json"
# (tile id, EPSG, latitude, longitude): two tiles in UTM 32N, one west of 6°E in 31N.
TILE_SITES = (("32TNR", 32632, 45.40, 9.30), ("32TPR", 32632, 45.40, 10.60),
              ("31TGL", 32631, 45.40, 5.40))
def _s2_date(rng, surface: Surface, doy, cloudy: bool, nodata_strip: bool):
    """(11, H, W) uint16: 10 bands x 10000 + SCL; and the cloud fraction drawn."""
    size = surface.parcel.shape[0]
    refl = surface.reflectance(doy, rng)
    green = surface.greenness(doy)[surface.parcel]
    scl = np.where(green > 0.3, 4, 5).astype(np.uint16)          # 4: vegetation, 5: not
    scl[surface.cls[surface.parcel] == WATER] = 6
    top, left = surface.marker
    refl[:, top:top + MARKER_SIZE, left:left + MARKER_SIZE] = 0.9
    cover = 0.0
    if cloudy:
        field = smooth_field(rng, size)
        threshold = rng.uniform(0.35, 0.75)
        high, medium = field > threshold + 0.1, (field > threshold) & (field <= threshold + 0.1)
        cirrus = (smooth_field(rng, size) > 0.8) & ~(high | medium)
        shift = max(2, size // 30)
        shadow = np.roll(high | medium, (shift, shift), axis=(0, 1)) & ~(high | medium | cirrus)
        refl[:, high] = 0.65 + 0.05 * rng.random((10, int(high.sum())))
        refl[:, medium] = 0.5 * refl[:, medium] + 0.3
        refl[:, cirrus] += 0.08
        refl[:, shadow] *= 0.35
        scl[high], scl[medium], scl[cirrus], scl[shadow] = 9, 8, 10, 3
        cover = float((high | medium | cirrus | shadow).mean())
    data = np.clip(np.round(refl * S2_SCALE), 1, 65535).astype(np.uint16)
    out = np.concatenate([data, scl[None]], axis=0)
    if nodata_strip:
        out[:, :, : max(1, size // 5)] = 0
    return out, cover


def _s1_date(rng, surface: Surface, doy, factor: int) -> np.ndarray:
    """(2, H/factor, W/factor) float32 dB with 4-look speckle (averaged in linear power)."""
    size = surface.parcel.shape[0]
    db = surface.backscatter_db(doy, rng)
    linear = 10 ** (db / 10) * rng.gamma(4.0, 1 / 4.0, db.shape)
    if factor > 1:
        linear = linear.reshape(2, size // factor, factor, size // factor, factor).mean((2, 4))
    return (10 * np.log10(linear)).astype(np.float32)


def _write(path: Path, data: np.ndarray, crs: str, transform: Affine, nodata, descriptions,
           tags: dict, colormap: dict | None = None) -> None:
    count, height, width = data.shape
    tiled = dict(tiled=True, blockxsize=64, blockysize=64) if height % 64 == 0 and width % 64 == 0 else {}
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata,
                       compress="lzw", **tiled) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions):
            dst.set_band_description(i + 1, name)
        dst.update_tags(**tags)
        if colormap:
            dst.write_colormap(1, colormap)


def make_synthetic_s1s2(out: str | os.PathLike, tiles: int = 3, size: int = 256,
                        dates: int = 12, seed: int = 0, s2_layout: str = "multiband",
                        year: int = 2021) -> dict[str, Any]:
    """Write the synthetic set to `out` (see the module docstring); return a summary.

    Args:
        s2_layout: ``'multiband'`` (one 11-band file per date) or ``'separate'`` (one file
            per band, ``S2_<tile>_<date>_<band>.tif``).
    """
    if size < 32 or size % 2:
        raise ValueError(f"size must be an even number >= 32 (got {size})")
    if tiles < 1 or dates < 1:
        raise ValueError("tiles and dates must be at least 1")
    if s2_layout not in ("multiband", "separate"):
        raise ValueError(f"s2_layout must be 'multiband' or 'separate', not {s2_layout!r}")
    root = Path(out)
    for folder in ("s2", "s1", "labels", "hr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    doys = np.linspace(15, 345, dates).round().astype(int)
    s2_dates = [_dt.date(year, 1, 1) + _dt.timedelta(days=int(d) - 1) for d in doys]
    s1_dates = [d + _dt.timedelta(days=2) for d in s2_dates]
    truth: dict[str, Any] = dict(classes=list(LANDCOVER_CLASSES), tiles={},
                                 s2_dates=[d.isoformat() for d in s2_dates],
                                 s1_dates=[d.isoformat() for d in s1_dates])
    files = 0
    for t in range(tiles):
        tile_id, epsg, lat, lon = TILE_SITES[t % len(TILE_SITES)]
        if t >= len(TILE_SITES):
            tile_id = f"{tile_id[:3]}{chr(ord('A') + t)}{tile_id[4:]}"
            lat += 0.1 * t
        crs = f"EPSG:{epsg}"
        xs, ys = warp_points("EPSG:4326", crs, [lon], [lat])
        transform = Affine(10.0, 0, round(xs[0] / 10) * 10, 0, -10.0, round(ys[0] / 10) * 10)
        surface = make_surface(rng, size)
        label, marker = surface.label, surface.marker
        s1_factor = 2 if t == 1 else 1
        cloudy_dates, nodata_dates = [], []
        for k, date in enumerate(s2_dates):
            stamp = date.strftime("%Y%m%d")
            cloudy = k > 0 and rng.random() < 0.6
            strip = t == 1 and k == 3
            s2, cover = _s2_date(rng, surface, doys[k], cloudy, strip)
            if cloudy:
                cloudy_dates.append(date.isoformat())
            if strip:
                nodata_dates.append(date.isoformat())
            tags = dict(ACQUISITION_DATE=date.isoformat(), TILE_ID=tile_id, CLOUD_COVER=f"{cover:.3f}")
            names = list(S2_BANDS) + ["SCL"]
            if s2_layout == "multiband":
                _write(root / "s2" / f"S2_{tile_id}_{stamp}.tif", s2, crs, transform, 0, names, tags)
                files += 1
            else:
                for b, name in enumerate(names):
                    _write(root / "s2" / f"S2_{tile_id}_{stamp}_{name}.tif", s2[b:b + 1], crs,
                           transform, 0, [name], tags)
                    files += 1
            s1 = _s1_date(rng, surface, doys[k] + 2, s1_factor)
            s1_date = s1_dates[k]
            s1_transform = transform @ Affine.scale(s1_factor)
            _write(root / "s1" / f"S1_{tile_id}_{s1_date.strftime('%Y%m%d')}.tif", s1, crs,
                   s1_transform, S1_NODATA, S1_BANDS,
                   dict(ACQUISITION_DATE=s1_date.isoformat(), TILE_ID=tile_id, UNITS="dB"))
            files += 1
        _write(root / "labels" / f"LABEL_{tile_id}.tif", label[None], crs, transform, 255,
               ["landcover"], dict(CLASSES=json.dumps(list(LANDCOVER_CLASSES)), TILE_ID=tile_id),
               colormap_of(LANDCOVER_PALETTE))
        files += 1
        if t == 0:
            clear = _s2_date(np.random.default_rng(seed + 1), surface, doys[0], False, False)[0]
            rgbn = clear[[2, 1, 0, 6]].astype(np.float32) / S2_SCALE
            hr = np.clip(rgbn / 0.4 * 255, 0, 255).astype(np.uint8).repeat(2, 1).repeat(2, 2)
            _write(root / "hr" / f"HR_{tile_id}.tif", hr, crs, transform @ Affine.scale(0.5),
                   None, ["R", "G", "B", "N"], dict(TILE_ID=tile_id))
            files += 1
        row, col = marker[0] + MARKER_SIZE / 2, marker[1] + MARKER_SIZE / 2
        mx, my = transform @ (col, row)
        mlon, mlat = warp_points(crs, "EPSG:4326", [mx], [my])
        truth["tiles"][tile_id] = dict(
            crs=crs, transform=list(transform)[:6], size=size, s1_res=10.0 * s1_factor,
            has_hr=t == 0, cloudy_dates=cloudy_dates, nodata_dates=nodata_dates,
            class_counts=np.bincount(label.ravel(), minlength=6).tolist(),
            marker=dict(row=row, col=col, x=mx, y=my, lat=mlat[0], lon=mlon[0], size=MARKER_SIZE,
                        cls=URBAN, reflectance=0.9))
    with open(root / TRUTH_JSON, "w", encoding="utf-8") as handle:
        json.dump(truth, handle, indent=2)
    return dict(root=str(root), tiles=list(truth["tiles"]), dates=dates, size=size, files=files,
                crs={k: v["crs"] for k, v in truth["tiles"].items()})
