"""Training / evaluation views of a chip as transforms, and label subsets."""
from __future__ import annotations

import torch

from interlace.domains.remote_sensing.data.transforms import (CloudyDateMasking,
                                                              RandomFlipRotate, SingleDateView,
                                                              cloudy_dates)


def _chip(dates: int = 6, size: int = 4, cloudy=(1,)) -> dict:
    s2_valid = torch.ones(dates, size, size, dtype=torch.bool)
    for t in cloudy:
        s2_valid[t] = False
    return dict(tile="T1", window=(0, 0, size, size),
                s2=torch.arange(dates * 2 * size * size, dtype=torch.float32).view(dates, 2, size, size),
                s2_valid=s2_valid, s2_doy=torch.arange(1, dates + 1), s2_dates=[f"d{t}" for t in range(dates)],
                s1=torch.randn(dates, 2, size, size), s1_valid=torch.ones(dates, size, size, dtype=torch.bool),
                s1_doy=torch.arange(1, dates + 1), s1_dates=[f"d{t}" for t in range(dates)],
                label=torch.arange(size * size).view(size, size))


def test_flip_rotate_moves_every_raster_and_the_label_together():
    chip = _chip()
    out = RandomFlipRotate(seed=3)(chip)
    # the same pixel moves the same way in the label and in the S2 values
    moved = out["label"].flatten().tolist()
    for key in ("s2", "s1"):
        for position, source in enumerate(moved):
            row, col = divmod(source, 4)
            assert torch.equal(out[key][..., position // 4, position % 4], chip[key][..., row, col])
    assert out["label"].shape == chip["label"].shape
    seen = {tuple(RandomFlipRotate(seed=s)(chip)["label"].flatten().tolist()) for s in range(40)}
    assert len(seen) == 8  # the eight dihedral views


def test_cloudy_masking_reaches_the_share_and_depends_only_on_the_chip():
    chip = _chip(dates=6, cloudy=(1,))
    out = CloudyDateMasking(fraction=0.5, seed=0)(chip)
    assert int(cloudy_dates(out["s2_valid"]).sum()) == 3
    masked = cloudy_dates(out["s2_valid"]) & ~cloudy_dates(chip["s2_valid"])
    assert torch.all(out["s2"][masked] == 0)
    assert torch.equal(chip["s2_valid"][1], torch.zeros(4, 4, dtype=torch.bool))  # not in place
    assert int(cloudy_dates(chip["s2_valid"]).sum()) == 1
    again = CloudyDateMasking(fraction=0.5, seed=0)(_chip(dates=6, cloudy=(1,)))
    assert torch.equal(again["s2_valid"], out["s2_valid"])
    other = dict(_chip(dates=6, cloudy=(1,)), window=(4, 0, 4, 4))
    picks = {tuple(cloudy_dates(CloudyDateMasking(0.5, seed=s)(other)["s2_valid"]).tolist())
             for s in range(10)}
    assert len(picks) > 1


def test_single_date_keeps_a_clear_date_and_the_same_pass_of_s1():
    chip = _chip(dates=6, cloudy=(0, 2, 3, 4, 5))  # only date 1 is clear
    out = SingleDateView(random=True)(chip)
    assert out["s2"].shape[0] == 1 and out["s1"].shape[0] == 1
    assert torch.equal(out["s2"][0], chip["s2"][1]) and torch.equal(out["s1"][0], chip["s1"][1])
    assert out["s2_dates"] == ["d1"] and out["s1_doy"].tolist() == [2]
    fixed = [SingleDateView(random=False, seed=1)(_chip())["s2_doy"].item() for _ in range(3)]
    assert len(set(fixed)) == 1


def test_label_fraction_keeps_a_seeded_subset_of_whole_chips(s1s2_root):
    import numpy as np

    from interlace.domains.remote_sensing.data import SentinelTimeSeriesDataset
    kwargs = dict(chip_size=16, modalities=dict(hr=None), test_mode=True)
    every = SentinelTimeSeriesDataset(str(s1s2_root), **kwargs)
    def chips(dataset):
        return [(dataset.get_data_info(i)["tile"], tuple(dataset.get_data_info(i)["window"]))
                for i in range(len(dataset))]

    windows = chips(every)
    few = SentinelTimeSeriesDataset(str(s1s2_root), label_fraction=0.25, label_seed=3, **kwargs)
    count = max(1, round(0.25 * len(windows)))
    drawn = sorted(np.random.default_rng(3).choice(len(windows), count, replace=False).tolist())
    assert len(windows) > 4 and chips(few) == [windows[i] for i in drawn]
    other = SentinelTimeSeriesDataset(str(s1s2_root), label_fraction=0.25, label_seed=4, **kwargs)
    assert chips(other) != chips(few)
    cached = SentinelTimeSeriesDataset(str(s1s2_root), cache_samples=True, **kwargs)
    assert torch.equal(cached[0]["s2"], cached[0]["s2"]) and len(cached._sample_cache) == 1


def test_label_fraction_out_of_range_is_refused(s1s2_root):
    import pytest

    from interlace.domains.remote_sensing.data import SentinelTimeSeriesDataset
    with pytest.raises(ValueError, match="label_fraction must lie in"):
        SentinelTimeSeriesDataset(str(s1s2_root), label_fraction=0.0)
