"""The synthetic land surface: Voronoi parcels, per-parcel traits, seasonal curves."""
from __future__ import annotations

import numpy as np
import pytest

from interlace.domains.remote_sensing.data.synthetic_surface import (
    CROP_EARLY, CROP_LATE, FOREST, MARKER_SIZE, URBAN, WATER, _parcel_map, make_surface,
    vegetation_fraction)


def test_parcel_map_is_the_nearest_seed_mosaic():
    parcel = _parcel_map(np.random.default_rng(3), 40, 12)
    # The same draws as _parcel_map: seeds, de-duplicated, then shuffled into parcel ids.
    rng = np.random.default_rng(3)
    seeds = np.unique(rng.integers(0, 40, (12, 2)), axis=0)
    seeds = seeds[rng.permutation(len(seeds))]
    assert parcel.max() + 1 == len(seeds)
    rows, cols = np.mgrid[0:40, 0:40]
    # Brute force: squared distance to the nearest seed; each pixel's own seed is that close
    # (ties may go either way).
    nearest = ((rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2).min(-1)
    own = (rows - seeds[parcel, 0]) ** 2 + (cols - seeds[parcel, 1]) ** 2
    np.testing.assert_array_equal(own, nearest)
    np.testing.assert_array_equal(parcel[seeds[:, 0], seeds[:, 1]], np.arange(len(seeds)))


def test_surface_has_marker_river_and_varied_crops():
    surface = make_surface(np.random.default_rng(0), 128)
    label = surface.label
    top = 128 // 4
    assert (label[top:top + MARKER_SIZE, top:top + MARKER_SIZE] == URBAN).all()
    assert (label[top - 2, top - 2:top + MARKER_SIZE + 2] == WATER).all()
    assert (label == WATER).mean() > 0.03  # the river
    crops = np.isin(surface.cls, (CROP_EARLY, CROP_LATE))
    assert crops.sum() >= 4
    # green-up days differ between parcels of one class (not one curve per class)
    early = surface.traits["start"][surface.cls == CROP_EARLY]
    assert early.std() > 3.0 and abs(early.mean() - 105) < 15


def test_greenness_follows_the_seasons():
    surface = make_surface(np.random.default_rng(1), 96)
    early, late = surface.cls == CROP_EARLY, surface.cls == CROP_LATE
    spring, autumn = surface.greenness(140), surface.greenness(235)
    # on average early crops are green in spring and bare in autumn, late crops the opposite
    assert spring[early].mean() > spring[late].mean() + 0.3
    assert autumn[late].mean() > autumn[early].mean() + 0.3
    winter = surface.greenness(15)
    assert winter[surface.cls == FOREST].min() > 0.2 and winter[early | late].max() < 0.15
    assert vegetation_fraction(CROP_EARLY, 150) > 0.8 > vegetation_fraction(CROP_LATE, 150)


@pytest.mark.parametrize("doy", [30, 200])
def test_reflectance_and_backscatter_shapes_and_ranges(doy):
    surface = make_surface(np.random.default_rng(2), 64)
    refl = surface.reflectance(doy, np.random.default_rng(0))
    db = surface.backscatter_db(doy, np.random.default_rng(0))
    assert refl.shape == (10, 64, 64) and refl.dtype == np.float32
    assert db.shape == (2, 64, 64) and db.dtype == np.float32
    assert 0.0 < refl.min() and refl.max() < 0.8
    water = surface.label == WATER
    assert db[0][water].mean() < db[0][~water].mean() - 5  # water is dark in VV
