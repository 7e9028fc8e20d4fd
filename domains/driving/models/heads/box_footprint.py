"""Where the next decoder layer looks: the footprint of each query's predicted box.

DeepInteraction's predictive interaction decoder (Sec. 3.3) samples the BEV map inside the
box predicted by the previous layer (enlarged 2x) and the images inside that box's
projection. The core decoder asks the domain for this footprint through
``footprint_fn(predictions, positions)``; this callable turns the detection head's box
predictions into one.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from interlace.core.interaction import Footprint

__all__ = ["PredictedBoxFootprint"]

# A not yet trained size head can output anything; exp() of more than this (~150 m) would
# only sample zeros outside the map, and inf would poison grid_sample.
_MAX_LOG_SIZE = 5.0


class PredictedBoxFootprint:
    """``footprint_fn`` of :class:`~interlace.core.interaction.PredictiveInteractionDecoder`
    for the detection head's box predictions.

    Args:
        span: (x, y) metres covered by the BEV map (converts box sizes to normalised map
            units; the yaw carries over unchanged when the map covers a square extent).

    Call: ``predictions`` holds (B, Q, 1) ``'height'`` (centre z, metres), (B, Q, 3)
    ``'size'`` (log l, w, h) and (B, Q, 2) ``'rot'`` (sin, cos); ``positions`` (B, Q, 2) are
    the normalised box centres. Returns a :class:`Footprint` with ``z`` and ``height`` set,
    which :class:`~interlace.core.interaction.ProjectionCorrespondence` needs to build the
    3D box it projects into the cameras.
    """

    def __init__(self, span: Sequence[float]) -> None:
        self.span = (float(span[0]), float(span[1]))

    def __call__(self, predictions: dict, positions: Tensor) -> Footprint:
        size = predictions["size"].clamp(max=_MAX_LOG_SIZE).exp()            # (B, Q, 3) metres
        planar = size[..., 0:2] / size.new_tensor(self.span)
        rot = predictions["rot"]
        yaw = torch.atan2(rot[..., 0], rot[..., 1])
        return Footprint(center=positions, size=planar.to(positions.dtype),
                         yaw=yaw.to(positions.dtype), z=predictions["height"][..., 0],
                         height=size[..., 2])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(span={self.span})"
