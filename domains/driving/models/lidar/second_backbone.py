"""The 2D BEV backbone of the LiDAR stream (mmdet3d's ``SECOND`` backbone): stages of
3 x 3 conv + BN + ReLU over the flattened sparse-encoder output, each stage starting
with a (possibly strided) conv. DeepInteraction++: 2 stages, 128 and 256 channels,
5 extra layers each, strides 1 and 2 (docs/methods/deepinteraction.md, "LiDAR stream")."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["SECONDBackbone", "bev_batch_norm"]


def bev_batch_norm(channels: int, norm_cfg: Optional[dict]) -> nn.BatchNorm2d:
    """BatchNorm2d from an mmdet3d-style ``dict(type='BN', eps, momentum)`` (the SECOND
    defaults eps 1e-3, momentum 0.01 when None)."""
    cfg = dict(norm_cfg or dict(type="BN", eps=1e-3, momentum=0.01))
    if cfg.get("type", "BN") not in ("BN", "BN2d"):
        raise ValueError(f"only BatchNorm ('BN') is supported, got norm_cfg {cfg}")
    return nn.BatchNorm2d(channels, eps=cfg.get("eps", 1e-3), momentum=cfg.get("momentum", 0.01))


@MODELS.register_module()
class SECONDBackbone(nn.Module):
    """Multi-stage 2D conv backbone on the BEV map.

    Args:
        in_channels: channels of the BEV input (256 from :class:`SparseEncoderSECOND`).
        out_channels: channels per stage.
        layer_nums: 3 x 3 convs per stage after its first (strided) conv.
        layer_strides: stride of each stage's first conv (relative to the previous stage).
        norm_cfg: ``dict(type='BN', eps=1e-3, momentum=0.01)``.

    Parameter names match mmdet3d's (``blocks.<stage>.<index>``).
    """

    def __init__(self, in_channels: int = 256, out_channels: Sequence[int] = (128, 256),
                 layer_nums: Sequence[int] = (5, 5), layer_strides: Sequence[int] = (1, 2),
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if not len(out_channels) == len(layer_nums) == len(layer_strides):
            raise ValueError(f"out_channels {out_channels}, layer_nums {layer_nums} and "
                             f"layer_strides {layer_strides} must have one entry per stage")
        self.in_channels = int(in_channels)
        self.out_channels = tuple(int(c) for c in out_channels)
        self.layer_strides = tuple(int(s) for s in layer_strides)
        blocks = []
        channels = self.in_channels
        for out_c, num, stride in zip(self.out_channels, layer_nums, self.layer_strides):
            # No conv bias: every conv is followed by BN, which has its own shift.
            layers: list[nn.Module] = [nn.Conv2d(channels, out_c, 3, stride=stride, padding=1,
                                                 bias=False),
                                       bev_batch_norm(out_c, norm_cfg), nn.ReLU(inplace=True)]
            for _ in range(int(num)):
                layers += [nn.Conv2d(out_c, out_c, 3, padding=1, bias=False),
                           bev_batch_norm(out_c, norm_cfg), nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers))
            channels = out_c
        self.blocks = nn.ModuleList(blocks)
        self._init_weights()

    def _init_weights(self) -> None:
        # Kaiming (fan_out, ReLU), as mmdet3d's SECOND init_cfg.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Run the stages.

        Args:
            x: (B, in_channels, H, W) BEV map.

        Returns:
            One map per stage, stage i: (B, out_channels[i], H / s_i, W / s_i) with s_i
            the product of the strides so far (180 x 180 and 90 x 90 at the paper's
            settings).
        """
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return tuple(outs)
