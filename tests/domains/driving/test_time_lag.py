"""ReverseTimeLag (lag t -> W - t) on hand-built clouds, and the lag-reversal comparison
(interlace.domains.driving.evaluation.lag_reversal) on hand-made velocity pairs."""
from __future__ import annotations

import numpy as np
import pytest

from interlace.core.engine.registry import TRANSFORMS
from interlace.domains.driving.data.transforms import ReverseTimeLag, reverse_time_lag
from interlace.domains.driving.evaluation.lag_reversal import (MIN_SPEED, find_pipeline,
                                                               velocity_change,
                                                               with_reversed_lags)

LAGS = (0.0, 0.05, 0.1, 0.15)  # key frame and three sweeps, as the check's data has


def car_trail(speed: float = 10.0, per_sweep: int = 5) -> np.ndarray:
    """(4 * per_sweep, 5): a car driving along +x at `speed` m/s, seen in the key frame
    and three older sweeps (ego-motion compensated): a point of lag t lies at x - v t.
    Key frame first, as the loaders give it."""
    rows = []
    for lag in LAGS:
        for i in range(per_sweep):
            rows.append((20.0 + 0.3 * i - speed * lag, 5.0, -1.0, 0.5, lag))
    return np.asarray(rows, dtype=np.float32)


def fitted_velocity(points: np.ndarray) -> float:
    """dx/dt of the trail read as a detector reads it: time runs as the lag falls
    (t = -lag), so the slope of x over -lag."""
    slope, _ = np.polyfit(-points[:, 4].astype(np.float64), points[:, 0].astype(np.float64), 1)
    return float(slope)


def test_reversal_maps_each_lag_to_window_minus_lag_and_keeps_the_geometry():
    cloud = car_trail()
    out = reverse_time_lag(cloud)
    assert np.array_equal(out[:, :4], cloud[:, :4])          # points, intensity untouched
    np.testing.assert_allclose(out[:, 4], 0.15 - cloud[:, 4], atol=1e-7)
    assert out[:5, 4] == pytest.approx([0.15] * 5)            # key frame -> oldest
    assert out[-5:, 4] == pytest.approx([0.0] * 5)            # oldest sweep -> "now"
    # evenly spaced sweeps: the same lag values as in training, only their order reversed
    assert sorted(set(np.round(out[:, 4], 6))) == sorted(set(np.round(cloud[:, 4], 6)))
    np.testing.assert_allclose(reverse_time_lag(out, window=0.15), cloud, atol=1e-7)
    assert cloud[0, 4] == 0.0  # the input is not changed in place


def test_reversal_runs_the_motion_cue_backwards():
    cloud = car_trail(speed=10.0)
    assert fitted_velocity(cloud) == pytest.approx(10.0, rel=1e-4)
    assert fitted_velocity(reverse_time_lag(cloud)) == pytest.approx(-10.0, rel=1e-4)
    parked = car_trail(speed=0.0)  # a static object's sweeps overlap: nothing changes
    assert fitted_velocity(reverse_time_lag(parked)) == pytest.approx(0.0, abs=1e-6)


def test_reversal_window_and_bad_clouds():
    cloud = car_trail()
    np.testing.assert_allclose(reverse_time_lag(cloud, window=0.2)[:, 4], 0.2 - cloud[:, 4],
                               atol=1e-7)
    with pytest.raises(ValueError, match="outside the window"):
        reverse_time_lag(cloud, window=0.1)  # the oldest sweep's lag would turn negative
    with pytest.raises(ValueError, match="no time-lag column"):
        reverse_time_lag(cloud[:, :4])
    key_only = cloud[:5].copy()  # no sweeps: window 0, nothing to reverse
    assert np.array_equal(reverse_time_lag(key_only), key_only)
    with pytest.raises(ValueError, match="window"):
        ReverseTimeLag(window=-1.0)


def test_transform_is_registered_and_works_in_a_pipeline():
    transform = TRANSFORMS.build(dict(type="ReverseTimeLag"))
    results = transform(dict(points=car_trail(), token="t"))
    assert results["points"][:5, 4] == pytest.approx([0.15] * 5)
    assert repr(ReverseTimeLag(0.5)) == "ReverseTimeLag(window=0.5)"


def test_pipeline_gets_the_reversal_right_after_the_sweep_loader():
    pipeline = [dict(type="LoadPointsFromFile"), dict(type="LoadPointsFromMultiSweeps"),
                dict(type="PointsRangeFilter"), dict(type="Pack3DDetInputs")]
    reversed_ = with_reversed_lags(pipeline, window=0.15)
    assert [s["type"] for s in reversed_] == ["LoadPointsFromFile", "LoadPointsFromMultiSweeps",
                                              "ReverseTimeLag", "PointsRangeFilter",
                                              "Pack3DDetInputs"]
    assert reversed_[2]["window"] == 0.15 and len(pipeline) == 4  # a copy
    with pytest.raises(ValueError, match="no LoadPointsFromMultiSweeps"):
        with_reversed_lags([dict(type="LoadPointsFromFile")])
    with pytest.raises(ValueError, match="already"):
        with_reversed_lags(reversed_)
    wrapped = dict(test_dataloader=dict(dataset=dict(type="W", dataset=dict(pipeline=pipeline))))
    assert find_pipeline(wrapped) == ("test_dataloader.dataset.dataset.pipeline", pipeline)
    with pytest.raises(KeyError, match="no dataset with a pipeline"):
        find_pipeline(dict(test_dataloader=dict(dataset=dict(type="W"))))


def _pairs(normal, reversed_, gt) -> np.ndarray:
    return np.column_stack([np.asarray(normal, float), np.asarray(reversed_, float),
                            np.asarray(gt, float)])


def test_velocity_change_of_hand_made_pairs():
    gt = [[5.0, 0.0], [0.0, -3.0]]
    same = velocity_change(_pairs(gt, gt, gt))
    assert same["velocity_change"] == 0.0 and same["turned_share"] == 0.0
    assert same["pairs"] == 2 and same["normal_along_gt"] == pytest.approx(4.0)
    turned = velocity_change(_pairs(gt, [[-5.0, 0.0], [0.0, 3.0]], gt))
    assert turned["velocity_change"] == pytest.approx(2.0)
    assert turned["velocity_change_pooled"] == pytest.approx(2.0)
    assert turned["turned_share"] == 1.0
    assert turned["reversed_along_gt"] == pytest.approx(-4.0)
    # one speed halved (change 0.5), one unchanged: mean 0.25, pooled 2.5 / 8
    mixed = velocity_change(_pairs(gt, [[2.5, 0.0], [0.0, -3.0]], gt))
    assert mixed["velocity_change"] == pytest.approx(0.25)
    assert mixed["velocity_change_median"] == pytest.approx(0.25)
    assert mixed["velocity_change_pooled"] == pytest.approx(2.5 / 8)
    # a normal prediction of 0 m/s: |v_rev| / MIN_SPEED, large but finite
    zero = velocity_change(_pairs([[0.0, 0.0]], [[0.1, 0.0]], [[5.0, 0.0]]))
    assert zero["velocity_change"] == pytest.approx(0.1 / MIN_SPEED)
    assert velocity_change(np.zeros((0, 6))) == dict(pairs=0.0)
