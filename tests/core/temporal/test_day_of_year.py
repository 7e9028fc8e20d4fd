"""DayOfYearEncoding: 366 days plus a zero, frozen padding row."""
import math

import pytest
import torch

from interlace.core.temporal import DAYS_PER_YEAR, DayOfYearEncoding


def test_table_has_366_days_and_a_padding_row_at_zero():
    encoding = DayOfYearEncoding(8)
    assert DAYS_PER_YEAR == 366
    assert encoding.table.weight.shape == (367, 8)
    out = encoding(torch.tensor([[0, 1, 366]]))
    assert out.shape == (1, 3, 8)
    assert torch.equal(out[0, 0], torch.zeros(8))
    assert out[0, 1].abs().sum() > 0 and not torch.equal(out[0, 1], out[0, 2])


def test_padding_row_gets_no_gradient():
    encoding = DayOfYearEncoding(4)
    encoding(torch.tensor([[0, 5]])).sum().backward()
    grad = encoding.table.weight.grad
    assert torch.equal(grad[0], torch.zeros(4)) and torch.equal(grad[5], torch.ones(4))


@pytest.mark.parametrize("days", [torch.tensor([[367]]), torch.tensor([[-1]])])
def test_days_outside_the_year_are_rejected(days):
    with pytest.raises(ValueError, match="0..366"):
        DayOfYearEncoding(4)(days)


def test_float_days_are_rejected():
    with pytest.raises(TypeError):
        DayOfYearEncoding(4)(torch.tensor([[3.0]]))


def test_harmonic_start_is_annual_sines_and_cosines_and_stays_learnable():
    encoding = DayOfYearEncoding(4, init="harmonic")
    table = encoding.table.weight
    angle = 2 * math.pi * 91 / 365.25  # 1 April, k = 1 and k = 2
    expected = torch.tensor([math.sin(angle), math.cos(angle),
                             math.sin(2 * angle), math.cos(2 * angle)])
    assert torch.allclose(table[91], expected, atol=1e-6)
    assert torch.equal(table[0], torch.zeros(4))  # padding stays zero
    # the year wraps: 31 December is closer to 1 January than 1 July is
    assert torch.dist(table[366], table[1]) < torch.dist(table[182], table[1])
    encoding(torch.tensor([[91, 200]])).sum().backward()
    assert table.grad[91].abs().sum() > 0 and table.grad[0].abs().sum() == 0


def test_unknown_start_and_odd_harmonic_size_are_refused():
    with pytest.raises(ValueError, match="normal' or 'harmonic"):
        DayOfYearEncoding(4, init="sinusoid")
    with pytest.raises(ValueError, match="even size"):
        DayOfYearEncoding(5, init="harmonic")
