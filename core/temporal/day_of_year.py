"""Learned day-of-year encoding for the tokens of a time series (SkySense Sec. 3.1).

SkySense adds a learned embedding of the acquisition day to every date's token, so the
temporal transformer knows *when* in the year each observation was taken (phenology),
independently of how many dates a series has or how they are spaced. Index 0 is kept for
padding (dates that do not exist in a sample of a batch of unequal-length series): its
row is zero and receives no gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DayOfYearEncoding", "DAYS_PER_YEAR", "PADDING_DAY"]

# 366 so that 31 December of a leap year has its own entry (SkySense's table has 365).
DAYS_PER_YEAR = 366
PADDING_DAY = 0


class DayOfYearEncoding(nn.Module):
    """A table of ``DAYS_PER_YEAR + 1`` learned vectors, looked up by day of year.

    Args:
        embed_dims: D, the size of each vector.

    Attributes:
        table: ``nn.Embedding(367, D, padding_idx=0)``; row d is day d (1 = 1 January),
            row 0 the padding entry (all zeros, never trained).
    """

    def __init__(self, embed_dims: int) -> None:
        super().__init__()
        self.embed_dims = int(embed_dims)
        self.table = nn.Embedding(DAYS_PER_YEAR + 1, self.embed_dims, padding_idx=PADDING_DAY)
        # Small initial values: the encoding is added to backbone features and should not
        # drown them before it has learned anything (ViT position-embedding practice).
        nn.init.trunc_normal_(self.table.weight, std=0.02)
        with torch.no_grad():
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
