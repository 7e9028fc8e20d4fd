"""Learned day-of-year encoding for the tokens of a time series (SkySense Sec. 3.1).

SkySense adds a learned embedding of the acquisition day to every date's token, so the
temporal transformer knows *when* in the year each observation was taken (phenology),
independently of how many dates a series has or how they are spaced. Index 0 is kept for
padding (dates that do not exist in a sample of a batch of unequal-length series): its
row is zero and receives no gradient.

The table starts either small and random (``init='normal'``, ViT position-embedding
practice) or as annual harmonics (``init='harmonic'``: ``sin / cos(2 pi k d / 365.25)``
for k = 1 .. D/2, unit amplitude). Both stay fully learned; the harmonic start tells the
transformer from step 0 which dates are close in the year (and that 31 December is next
to 1 January), so a model starting from scratch separates classes that differ only in
*when* they change, such as two crops sown at different dates, after far fewer steps.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["DayOfYearEncoding", "annual_harmonics", "DAYS_PER_YEAR", "PADDING_DAY"]

# 366 so that 31 December of a leap year has its own entry (SkySense's table has 365).
DAYS_PER_YEAR = 366
PADDING_DAY = 0


def annual_harmonics(embed_dims: int) -> Tensor:
    """(367, D) rows ``[sin(2 pi k d / Y), cos(2 pi k d / Y)]_{k=1..D/2}`` for day d (row 0 too;
    the caller zeroes it), Y = 365.25 days."""
    if embed_dims % 2:
        raise ValueError(f"harmonic day-of-year encoding needs an even size, got {embed_dims}")
    days = torch.arange(DAYS_PER_YEAR + 1, dtype=torch.float64).unsqueeze(1)
    k = torch.arange(1, embed_dims // 2 + 1, dtype=torch.float64).unsqueeze(0)
    angle = 2 * math.pi * k * days / 365.25
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1).float()


class DayOfYearEncoding(nn.Module):
    """A table of ``DAYS_PER_YEAR + 1`` learned vectors, looked up by day of year.

    Args:
        embed_dims: D, the size of each vector.
        init: ``'normal'`` (truncated normal, std 0.02) or ``'harmonic'`` (annual sine /
            cosine pairs, see the module docstring; needs an even D).

    Attributes:
        table: ``nn.Embedding(367, D, padding_idx=0)``; row d is day d (1 = 1 January),
            row 0 the padding entry (all zeros, never trained).
    """

    def __init__(self, embed_dims: int, init: str = "normal") -> None:
        super().__init__()
        self.embed_dims = int(embed_dims)
        self.init = init
        self.table = nn.Embedding(DAYS_PER_YEAR + 1, self.embed_dims, padding_idx=PADDING_DAY)
        with torch.no_grad():
            if init == "normal":
                # Small initial values: the encoding is added to backbone features and should
                # not drown them before it has learned anything.
                nn.init.trunc_normal_(self.table.weight, std=0.02)
            elif init == "harmonic":
                self.table.weight.copy_(annual_harmonics(self.embed_dims))
            else:
                raise ValueError(f"init must be 'normal' or 'harmonic', got {init!r}")
            self.table.weight[PADDING_DAY].zero_()

    def forward(self, day_of_year: Tensor) -> Tensor:
        """Look up the encoding of each date.

        Args:
            day_of_year: (B, T) integer days in 1..366, 0 for padding.

        Returns:
            (B, T, D) encodings; zero vectors where ``day_of_year == 0``.
        """
        if day_of_year.dtype.is_floating_point or day_of_year.dtype == torch.bool:
            raise TypeError(f"day_of_year must be an integer tensor, got {day_of_year.dtype}")
        if day_of_year.numel() and (int(day_of_year.min()) < 0
                                    or int(day_of_year.max()) > DAYS_PER_YEAR):
            raise ValueError(f"day_of_year must lie in 0..{DAYS_PER_YEAR} (0 = padding), got "
                             f"values in {int(day_of_year.min())}..{int(day_of_year.max())}")
        return self.table(day_of_year.long())
