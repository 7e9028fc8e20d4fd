"""The land surface behind the synthetic Sentinel-1/2 set: parcels and what each looks like
on a day of year.

A tile is a mosaic of parcels (Voronoi cells of random seeds, plus a river and the marker).
Every parcel has a class and its own traits, and the tile has its own climate and
radiometry, so that a class is a *distribution* of seasonal curves and signatures rather
than one curve (a classifier fitted on a few labelled chips meets unseen variants on other
tiles, as in real data):

- tile: a phenology shift (days, a different climate), a SAR calibration offset (dB);
  per date a per-band atmospheric gain;
- crops (early, late): green-up day and season length jittered per parcel, peak
  greenness and soil brightness per parcel; early and late seasons overlap in summer;
- forest: canopy density and a deciduous share per parcel (deciduous stands are green
  only from spring to autumn, like a long crop season, but keep SAR volume scattering);
- bare: soil brightness and moisture per parcel, some with a spring flush of weeds;
- urban: brightness and a share of green (parks) per parcel;
- water: turbidity per parcel, wind roughening of the SAR backscatter per date;
- pixels: a smooth texture fixed over the season and 4 % noise.

Vectorised over parcels (a lookup table per date, indexed by the parcel map) so that large
tiles are generated in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt, zoom

__all__ = ["WATER", "URBAN", "BARE", "FOREST", "CROP_EARLY", "CROP_LATE", "MARKER_SIZE",
           "Surface", "make_surface", "smooth_field", "vegetation_fraction"]

WATER, URBAN, BARE, FOREST, CROP_EARLY, CROP_LATE = range(6)
MARKER_SIZE = 8
_SOIL = np.array([.08, .11, .14, .17, .19, .21, .23, .24, .30, .26], np.float32)
_VEG = np.array([.03, .07, .04, .10, .25, .32, .38, .40, .20, .10], np.float32)
_WATER = np.array([.06, .05, .03, .02, .015, .01, .01, .01, .005, .003], np.float32)
_TURBID = np.array([.04, .05, .05, .03, .02, .01, .01, .01, .0, .0], np.float32)
_URBAN = np.array([.12, .13, .14, .15, .16, .17, .18, .18, .20, .19], np.float32)
# Mean (VV, VH) dB of the classes whose backscatter does not follow the greenness.
_SAR_DB = {WATER: (-22.0, -29.0), URBAN: (3.0, -7.0), BARE: (-13.0, -21.0),
           FOREST: (-7.5, -12.5)}
# Green-up day and season length (mean, per-parcel std) of the two crops.
_CROP_SEASON = {CROP_EARLY: ((105.0, 10.0), (85.0, 10.0)), CROP_LATE: ((165.0, 10.0), (95.0, 10.0))}
# Leaf-on day and length of a deciduous forest's season.
_LEAF_START, _LEAF_LENGTH = 110.0, 190.0


def _sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _season(doy, start, length, width: float = 8.0) -> np.ndarray:
    """Smooth 0-1 bump: up around `start`, down around `start + length`."""
    return _sigmoid((doy - start) / width) * _sigmoid((start + length - doy) / width)


def vegetation_fraction(cls: int, doy: float) -> float:
    """Green-vegetation fraction of a *typical* parcel of `cls` on a day of year."""
    if cls in _CROP_SEASON:
        (start, _), (length, _) = _CROP_SEASON[cls]
        return float(0.05 + 0.8 * _season(doy, start, length))
    if cls == FOREST:
        return float(0.75 * (1 - 0.3 * (1 - _season(doy, _LEAF_START, _LEAF_LENGTH, 10))))
    return 0.05 if cls == BARE else 0.0


def smooth_field(rng: np.random.Generator, size: int, cells: int = 6) -> np.ndarray:
    """Smooth random field in [0, 1] of shape (size, size)."""
    coarse = rng.random((cells, cells))
    field = zoom(coarse, size / cells, order=3)[:size, :size]
    field = (field - field.min()) / max(np.ptp(field), 1e-6)
    return np.pad(field, ((0, size - field.shape[0]), (0, size - field.shape[1])), mode="edge")


@dataclass
class Surface:
    """One tile's parcels and their traits (P parcels)."""

    parcel: np.ndarray            # (H, W) int32 parcel index
    cls: np.ndarray               # (P,) class of each parcel
    traits: dict[str, np.ndarray]  # name -> (P,) per-parcel trait
    texture: np.ndarray           # (H, W) float32 multiplicative, ~1
    shift: float                  # tile phenology shift, days
    sar_offset: float             # tile SAR calibration offset, dB
    marker: tuple[int, int]       # (row, col) of the marker's top-left pixel

    @property
    def label(self) -> np.ndarray:
        return self.cls[self.parcel].astype(np.uint8)

    def greenness(self, doy: float) -> np.ndarray:
        """(P,) green-vegetation fraction of every parcel on `doy`."""
        t, doy = self.traits, doy - self.shift
        f = np.zeros(len(self.cls))
        crop = np.isin(self.cls, (CROP_EARLY, CROP_LATE))
        f[crop] = 0.05 + (t["peak"] * _season(doy, t["start"], t["length"]))[crop]
        forest = self.cls == FOREST
        leaf = _season(doy, _LEAF_START + t["start_jitter"], _LEAF_LENGTH, 10)
        f[forest] = (t["density"] * (1 - t["deciduous"] * (1 - leaf)))[forest]
        bare = self.cls == BARE
        f[bare] = (0.03 + t["weeds"] * _season(doy, 90 + t["start_jitter"], 50))[bare]
        urban = self.cls == URBAN
        f[urban] = t["parks"][urban]
        return f

    def reflectance(self, doy: float, rng: np.random.Generator) -> np.ndarray:
        """(10, H, W) float32 surface reflectance on `doy`, with pixel noise."""
        t, f = self.traits, self.greenness(doy)[:, None]
        soil = _SOIL[None] * t["soil"][:, None]
        table = f * _VEG[None] + (1 - f) * soil
        water, urban = self.cls == WATER, self.cls == URBAN
        table[water] = _WATER[None] + t["turbidity"][water, None] * _TURBID[None]
        table[urban] = ((1 - f[urban]) * _URBAN[None] * t["soil"][urban, None]
                        + f[urban] * _VEG[None])
        gain = rng.normal(1.0, 0.04, (10, 1, 1))                  # atmosphere of the date
        refl = np.moveaxis(table.astype(np.float32)[self.parcel], -1, 0) * self.texture * gain
        return (refl * rng.normal(1.0, 0.04, refl.shape)).astype(np.float32)

    def backscatter_db(self, doy: float, rng: np.random.Generator) -> np.ndarray:
        """(2, H, W) float32 VV / VH in dB on `doy`, before speckle."""
        t, f = self.traits, self.greenness(doy)
        vv, vh = -12.0 + 4.0 * f, -21.0 + 8.0 * f
        for cls, (cvv, cvh) in _SAR_DB.items():
            where = self.cls == cls
            vv[where], vh[where] = cvv, cvh
        bare = self.cls == BARE                                    # wet soil is brighter
        vv[bare] += 4 * t["moisture"][bare]
        vh[bare] += 4 * t["moisture"][bare]
        water = self.cls == WATER                                  # wind roughens water
        wind = rng.uniform(0, 5, len(self.cls))
        vv[water] += wind[water]
        vh[water] += 0.6 * wind[water]
        table = np.stack([vv, vh], 1) + t["sar"][:, None] + self.sar_offset
        return np.moveaxis(table.astype(np.float32)[self.parcel], -1, 0)


def _parcel_map(rng: np.random.Generator, size: int, n_seeds: int) -> np.ndarray:
    """(H, W) index of the nearest of `n_seeds` random seeds (a Voronoi mosaic) through
    one exact Euclidean distance transform, O(H W) whatever the number of seeds."""
    seeds = np.unique(rng.integers(0, size, (n_seeds, 2)), axis=0)
    seeds = seeds[rng.permutation(len(seeds))]
    index = np.full((size, size), -1, np.int32)
    index[seeds[:, 0], seeds[:, 1]] = np.arange(len(seeds))
    _, (rows, cols) = distance_transform_edt(index < 0, return_indices=True)
    return index[rows, cols]


def make_surface(rng: np.random.Generator, size: int) -> Surface:
    """Parcels with random classes and traits, a river, and the marker (an urban square of
    MARKER_SIZE px ringed by 2 px of water at (size // 4, size // 4))."""
    parcel = _parcel_map(rng, size, max(6, size * size // 1500))
    n = int(parcel.max()) + 1
    cls = rng.choice([URBAN, BARE, FOREST, CROP_EARLY, CROP_LATE], n,
                     p=[.12, .13, .2, .275, .275])
    rows, cols = np.ogrid[0:size, 0:size]
    river = size * (0.7 + 0.1 * np.sin(cols / size * 2 * np.pi * rng.uniform(0.5, 1.5)))
    parcel = np.where(np.abs(rows - river) < max(2, size // 40), n, parcel).astype(np.int32)
    top = size // 4
    parcel[top - 2:top + MARKER_SIZE + 2, top - 2:top + MARKER_SIZE + 2] = n + 1
    parcel[top:top + MARKER_SIZE, top:top + MARKER_SIZE] = n + 2
    cls = np.concatenate([cls, [WATER, WATER, URBAN]])
    p = len(cls)
    start, length = np.zeros(p), np.zeros(p)
    for crop, ((mean_start, sd_start), (mean_len, sd_len)) in _CROP_SEASON.items():
        start[cls == crop] = mean_start + sd_start * rng.standard_normal(int((cls == crop).sum()))
        length[cls == crop] = mean_len + sd_len * rng.standard_normal(int((cls == crop).sum()))
    traits = dict(
        start=start, length=length, peak=rng.uniform(0.55, 0.9, p),
        start_jitter=rng.normal(0, 8, p), density=rng.uniform(0.6, 0.9, p),
        deciduous=rng.uniform(0.0, 0.6, p), weeds=rng.uniform(0.0, 0.25, p) * (rng.random(p) < .5),
        parks=rng.uniform(0.0, 0.15, p), soil=rng.uniform(0.7, 1.35, p),
        moisture=rng.random(p), turbidity=rng.random(p), sar=rng.normal(0.0, 1.0, p))
    traits["soil"][-1], traits["parks"][-1] = 1.0, 0.0             # the marker is plain
    texture = (0.92 + 0.16 * smooth_field(rng, size, cells=max(6, size // 16))).astype(np.float32)
    return Surface(parcel=parcel, cls=cls, traits=traits, texture=texture,
                   shift=float(rng.uniform(-12, 12)), sar_offset=float(rng.normal(0, 0.5)),
                   marker=(top, top))
