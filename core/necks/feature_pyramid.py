"""Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object Detection",
CVPR 2017), with the arguments and behaviour of mmdet's ``FPN`` so its configs carry over.

Generic: it sees a tuple of maps, finest first, each half the size of the one before
(up to rounding), and knows nothing about where they came from.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["FeaturePyramidNetwork"]

_EXTRA_CONV_SOURCES = ("on_input", "on_lateral", "on_output")


@MODELS.register_module()
class FeaturePyramidNetwork(nn.Module):
    """Lateral 1x1 convs, a top-down pathway with nearest upsampling, 3x3 output convs.

    Args:
        in_channels: channels of each input level, finest first.
        out_channels: channels of every output level.
        num_outs: number of outputs. Levels beyond the used inputs are *extra* levels,
            each at twice the stride of the previous one.
        start_level: first input level used (e.g. 1 to skip the stride-4 map).
        end_level: last input level used, inclusive; -1 means the last one. If set,
            ``num_outs`` must equal ``end_level - start_level + 1`` (no extra levels, as
            in mmdet: the top-down pathway would skip the inputs above ``end_level``).
        add_extra_convs: how extra levels are made. ``False``: subsampling of the last
            output (max-pool with kernel 1 and stride 2, as mmdet and Detectron do).
            ``True`` or ``'on_input'``: a 3x3 stride-2 conv on the last used input map;
            ``'on_lateral'``: on its lateral; ``'on_output'``: on the last output (the
            RetinaNet P6/P7 variant). Further extra levels convolve the previous one.
        relu_before_extra_convs: apply ReLU before every extra conv after the first.
        out_indices: which of the ``num_outs`` outputs to compute and return (default:
            all). Output convs of levels left out are not built, so a detector that uses
            only the stride-4 level carries no unused parameters (which DDP rejects).

    Attributes:
        out_indices: the returned output indices, ascending.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int,
                 start_level: int = 0, end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False,
                 out_indices: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        if not 0 <= start_level < self.num_ins:
            raise ValueError(f"start_level {start_level} outside the {self.num_ins} input levels")
        if end_level == -1 or end_level == self.num_ins - 1:
            self.end_level = self.num_ins - 1
            if num_outs < self.num_ins - start_level:
                raise ValueError(f"num_outs {num_outs} < the {self.num_ins - start_level} "
                                 f"input levels from start_level {start_level}")
        else:
            if not start_level <= end_level < self.num_ins:
                raise ValueError(f"end_level {end_level} must lie in [{start_level}, {self.num_ins})")
            if num_outs != end_level - start_level + 1:
                raise ValueError(f"with end_level set, num_outs must be {end_level - start_level + 1}")
            self.end_level = end_level
        self.start_level = start_level
        self.num_base = self.end_level - start_level + 1  # outputs with a lateral
        if add_extra_convs is True:
            add_extra_convs = "on_input"
        if add_extra_convs not in (False, *_EXTRA_CONV_SOURCES):
            raise ValueError(f"add_extra_convs must be False, True or one of {_EXTRA_CONV_SOURCES}, "
                             f"got {add_extra_convs!r}")
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs

        wanted = sorted(set(range(num_outs) if out_indices is None else out_indices))
        if not wanted or wanted[0] < 0 or wanted[-1] >= num_outs:
            raise ValueError(f"out_indices {out_indices} must be a non-empty subset of range({num_outs})")
        self.out_indices = wanted
        self.num_extra = max(i for i in wanted) + 1 - self.num_base if wanted[-1] >= self.num_base else 0
        # Extra levels built from the last *output* (pooling or 'on_output') need it
        # computed even when it is not returned.
        needs_last_output = self.num_extra > 0 and self.add_extra_convs in (False, "on_output")
        self._computed_base = sorted({i for i in wanted if i < self.num_base}
                                     | ({self.num_base - 1} if needs_last_output else set()))

        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(self.in_channels[level], out_channels, 1)
            for level in range(start_level, self.end_level + 1))
        # A ModuleDict keyed by output index keeps checkpoint names (output_convs.0, ...)
        # stable whichever subset is built.
        self.output_convs = nn.ModuleDict(
            {str(i): nn.Conv2d(out_channels, out_channels, 3, padding=1) for i in self._computed_base})
        self.extra_convs = nn.ModuleList()
        if self.add_extra_convs:
            for k in range(self.num_extra):
                if k == 0 and self.add_extra_convs == "on_input":
                    channels = self.in_channels[self.end_level]
                else:
                    channels = out_channels
                self.extra_convs.append(nn.Conv2d(channels, out_channels, 3, stride=2, padding=1))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # mmdet's default: Xavier-uniform, zero bias
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def output_strides(self, input_strides: Sequence[int]) -> list[int]:
        """Stride of each returned map, given the stride of each input map."""
        if len(input_strides) != self.num_ins:
            raise ValueError(f"expected {self.num_ins} input strides, got {len(input_strides)}")
        last = input_strides[self.end_level]
        return [input_strides[self.start_level + i] if i < self.num_base
                else last * 2 ** (i - self.num_base + 1) for i in self.out_indices]

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Build the pyramid.

        Args:
            inputs: ``len(in_channels)`` maps, ``inputs[i]``: (N, in_channels[i], H_i, W_i),
                finest first, H_{i+1} = ceil(H_i / 2) (odd sizes are fine).

        Returns:
            One map per entry of ``out_indices``: (N, out_channels, h_k, w_k), where output
            k < num_base has the size of input ``start_level + k`` and each extra level
            has ceil(half) the size of the level before.
        """
        if len(inputs) != self.num_ins:
            raise ValueError(f"expected {self.num_ins} input maps, got {len(inputs)}")
        used = inputs[self.start_level:self.end_level + 1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, used)]
        # Top-down: upsample to the finer map's exact size (not x2) so odd sizes work.
        for i in range(self.num_base - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        outputs: dict[int, Tensor] = {
            i: self.output_convs[str(i)](laterals[i]) for i in self._computed_base}
        if self.num_extra:
            if not self.add_extra_convs:
                previous = outputs[self.num_base - 1]
                for k in range(self.num_extra):
                    previous = F.max_pool2d(previous, 1, stride=2)
                    outputs[self.num_base + k] = previous
            else:
                source = {"on_input": used[-1], "on_lateral": laterals[-1],
                          "on_output": outputs.get(self.num_base - 1)}[self.add_extra_convs]
                previous = self.extra_convs[0](source)
                outputs[self.num_base] = previous
                for k in range(1, self.num_extra):
                    if self.relu_before_extra_convs:
                        previous = F.relu(previous)
                    previous = self.extra_convs[k](previous)
                    outputs[self.num_base + k] = previous
        return tuple(outputs[i] for i in self.out_indices)
