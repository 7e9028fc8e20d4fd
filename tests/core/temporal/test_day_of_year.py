"""DayOfYearEncoding: 366 days plus a zero, frozen padding row."""
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
