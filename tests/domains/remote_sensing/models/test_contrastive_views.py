"""ContrastiveViewSampler: overlapping crops whose cells correspond exactly; date subsets."""
import pytest
import torch

from interlace.domains.remote_sensing.models import ContrastiveViewSampler


def _inputs(size=16, dates=6):
    # Pixel values encode their own (row, col), so a correspondence error shows.
    rows = torch.arange(size).view(size, 1).expand(size, size).float()
    cols = torch.arange(size).view(1, size).expand(size, size).float()
    image = torch.stack([rows, cols])  # (2, H, W)
    series = image.expand(2, dates, 2, size, size).clone()
    doy = torch.tensor([[10, 40, 70, 0, 0, 0], [5, 50, 100, 150, 200, 250]])
    return dict(series=dict(a=series), day_of_year=dict(a=doy),
                valid=dict(a=torch.ones(2, dates, size, size, dtype=torch.bool)),
                high_res=image[:1].expand(2, 1, size, size).repeat_interleave(2, -1)
                .repeat_interleave(2, -2))


@pytest.mark.parametrize("seed", range(5))
def test_overlap_cells_hold_the_same_ground(seed):
    sampler = ContrastiveViewSampler(crop_size=8, cell_size=2, min_overlap=2, num_dates=3,
                                     seed=seed)
    pair = sampler(_inputs())
    (st, sl), (tt, tl), (h, w) = pair.student_overlap, pair.teacher_overlap, pair.overlap_size
    assert h >= 2 and w >= 2
    s = pair.student["series"]["a"][..., st * 2:(st + h) * 2, sl * 2:(sl + w) * 2]
    t = pair.teacher["series"]["a"][..., tt * 2:(tt + h) * 2, tl * 2:(tl + w) * 2]
    assert s.shape[-2:] == (2 * h, 2 * w) and torch.equal(s, t)
    assert pair.student["high_res"].shape[-2:] == (16, 16)


def test_views_keep_real_dates_first_and_in_time_order():
    sampler = ContrastiveViewSampler(crop_size=8, cell_size=2, num_dates=3, seed=0)
    pair = sampler(_inputs())
    doy = pair.student["day_of_year"]["a"]
    assert doy.shape == (2, 3)
    assert sorted(doy[0].tolist()) == [10, 40, 70]  # the only real dates of sample 0
    assert (doy[1].diff() > 0).all()
    assert pair.student["series"]["a"].shape == (2, 3, 2, 8, 8)
    assert pair.student["valid"]["a"].shape == (2, 3, 8, 8)


def test_crop_must_fit_the_cells():
    with pytest.raises(ValueError, match="multiple"):
        ContrastiveViewSampler(crop_size=7, cell_size=2)
