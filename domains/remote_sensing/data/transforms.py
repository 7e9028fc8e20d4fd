"""Training and evaluation views of a chip, as registered transforms for the pipeline of
:class:`SentinelTimeSeriesDataset` (a chip dict in, a chip dict out; see that module for
the keys).

- :class:`RandomFlipRotate`: one of the eight flips / 90-degree turns of the chip, the same
  for every raster, mask and the label.
- :class:`CloudyDateMasking`: mask whole dates as overcast until at least a share of the
  chip's dates is cloudy; which dates depends on the chip only, as real clouds would.
- :class:`SingleDateView`: keep one clear date (S2 and the S1 of the same index), drawn
  anew each time in training, fixed per chip at evaluation.

Chip-keyed randomness (``seed`` plus the tile and window) makes evaluation views
identical from one run to the next, whatever order the chips are read in.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Optional

import torch

from interlace.core.engine.registry import TRANSFORMS

__all__ = ["RandomFlipRotate", "CloudyDateMasking", "SingleDateView", "cloudy_dates",
           "chip_generator", "CLOUDY_CHIP_SHARE"]

# A date counts as cloudy in a chip when more than this share of its S2 pixels is masked.
CLOUDY_CHIP_SHARE = 0.5
_SPATIAL = ("s2", "s2_valid", "s1", "s1_valid", "hr", "label")


def chip_generator(sample: dict, seed: int, salt: str) -> torch.Generator:
    """A generator seeded from `seed`, `salt` and the chip's tile and window."""
    key = f"{seed}/{salt}/{sample.get('tile')}/{tuple(sample.get('window', ()))}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2 ** 63 - 1))


def cloudy_dates(valid_s2: torch.Tensor) -> torch.Tensor:
    """(T, H, W) bool validity -> (T,) bool: is the date cloudy in the chip."""
    if valid_s2.numel() == 0:
        return torch.zeros(valid_s2.shape[:1], dtype=torch.bool)
    return (~valid_s2).float().flatten(1).mean(1) > CLOUDY_CHIP_SHARE


@TRANSFORMS.register_module()
class RandomFlipRotate:
    """One of the 8 dihedral views (k quarter turns, then an optional horizontal flip) of
    every spatial item (``s2``, ``s1``, their ``*_valid`` masks, ``hr``, ``label``).

    The chip's ``transform`` keeps the un-turned geotransform: use this transform for
    training only, never before writing a georeferenced output.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        # Without a seed, torch's global generator: seeded by the Runner's `randomness`, so
        # a training run repeats exactly (with num_workers=0).
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __call__(self, sample: dict) -> dict:
        turns = int(torch.randint(4, (1,), generator=self.generator))
        flip = bool(torch.randint(2, (1,), generator=self.generator))
        out = dict(sample)
        for key in _SPATIAL:
            value = sample.get(key)
            if not isinstance(value, torch.Tensor) or value.dim() < 2:
                continue
            value = torch.rot90(value, turns, dims=(-2, -1))
            out[key] = (value.flip(-1) if flip else value).contiguous()
        return out


@TRANSFORMS.register_module()
class CloudyDateMasking:
    """Mask whole S2 dates as overcast (values 0, validity False) until at least
    `fraction` of the chip's dates are cloudy (dates already cloudy count).

    Args:
        fraction: least share of cloudy dates per chip.
        seed: with the chip's tile and window, picks which clear dates go.
    """

    def __init__(self, fraction: float = 0.5, seed: int = 0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"CloudyDateMasking: fraction must lie in [0, 1], got {fraction}")
        self.fraction, self.seed = fraction, seed

    def __call__(self, sample: dict) -> dict:
        valid = sample["s2_valid"]
        dates = valid.shape[0]
        cloudy = cloudy_dates(valid)
        missing = math.ceil(self.fraction * dates - 1e-9) - int(cloudy.sum())
        if missing <= 0:
            return sample
        clear = (~cloudy).nonzero().flatten()
        order = torch.randperm(len(clear), generator=chip_generator(sample, self.seed, "cloud"))
        chosen = clear[order[:missing]]
        out = dict(sample)
        out["s2_valid"] = valid.clone()
        out["s2_valid"][chosen] = False
        out["s2"] = sample["s2"].clone()
        out["s2"][chosen] = 0.0
        return out


@TRANSFORMS.register_module()
class SingleDateView:
    """Keep one date: a clear S2 date (any date if none is clear) and the S1 date of the
    same index (the same pass in the generated data).

    Args:
        random: draw the date anew on every call (training, from torch's global generator,
            which the Runner seeds); else fixed per chip.
        seed: seed of the per-chip draw when not `random`.
    """

    def __init__(self, random: bool = True, seed: int = 0) -> None:
        self.random, self.seed = random, seed

    def __call__(self, sample: dict) -> dict:
        dated = sample["s2_doy"] > 0
        options = (~cloudy_dates(sample["s2_valid"]) & dated).nonzero().flatten()
        if len(options) == 0:
            options = torch.arange(sample["s2_valid"].shape[0])
        # random: torch's global generator (seeded by the Runner); else fixed per chip
        generator = None if self.random else chip_generator(sample, self.seed, "date")
        pick = int(options[int(torch.randint(len(options), (1,), generator=generator))])
        out = dict(sample)
        for name in ("s2", "s1"):
            count = sample[name].shape[0]
            index = min(pick, count - 1) if count else None
            for key in (name, f"{name}_doy", f"{name}_valid"):
                out[key] = sample[key][index:index + 1] if index is not None else sample[key]
            dates: Any = sample.get(f"{name}_dates")
            if dates is not None and index is not None:
                out[f"{name}_dates"] = [dates[index]]
        return out
