"""The BEV neck of the LiDAR stream (mmdet3d's ``SECONDFPN``): bring every backbone stage
to one stride (transposed conv to upsample, strided conv to downsample, 1 x 1 conv when
already there), then concatenate along channels. DeepInteraction++: stages 128 and 256
channels, upsampled x1 and x2 to 256 each -> one 512-channel 180 x 180 map at stride 8."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .second_backbone import bev_batch_norm

__all__ = ["SECONDFPN"]


@MODELS.register_module()
class SECONDFPN(nn.Module):
    """Resample the backbone's stages to one resolution and concatenate them.

    Args:
        in_channels: channels of each backbone stage.
        out_channels: channels each stage is mapped to; the output has their sum.
        upsample_strides: per stage, > 1 upsamples by that factor (transposed conv with
            kernel = stride), < 1 downsamples by its inverse (strided conv), 1 keeps the
            size (1 x 1 conv if ``use_conv_for_no_stride``, else a 1 x 1 transposed conv:
            the same map, mmdet3d's two spellings).
        norm_cfg: ``dict(type='BN', eps=1e-3, momentum=0.01)``.
        use_conv_for_no_stride: see ``upsample_strides``.

    Parameter names match mmdet3d's (``deblocks.<stage>.0`` conv, ``.1`` BN).
    """

    def __init__(self, in_channels: Sequence[int] = (128, 256),
                 out_channels: Sequence[int] = (256, 256),
                 upsample_strides: Sequence[float] = (1, 2), norm_cfg: Optional[dict] = None,
                 use_conv_for_no_stride: bool = True) -> None:
        super().__init__()
        if not len(in_channels) == len(out_channels) == len(upsample_strides):
            raise ValueError(f"in_channels {in_channels}, out_channels {out_channels} and "
                             f"upsample_strides {upsample_strides} must have one entry per stage")
        self.in_channels = tuple(int(c) for c in in_channels)
        self.out_channels = tuple(int(c) for c in out_channels)
        self.upsample_strides = tuple(float(s) for s in upsample_strides)
        deblocks = []
        for c_in, c_out, stride in zip(self.in_channels, self.out_channels, self.upsample_strides):
            if stride > 1 or (stride == 1 and not use_conv_for_no_stride):
                k = int(round(stride))
                resample: nn.Module = nn.ConvTranspose2d(c_in, c_out, k, stride=k, bias=False)
            else:
                k = int(round(1 / stride))
                resample = nn.Conv2d(c_in, c_out, k, stride=k, bias=False)
            deblocks.append(nn.Sequential(resample, bev_batch_norm(c_out, norm_cfg),
                                          nn.ReLU(inplace=True)))
        self.deblocks = nn.ModuleList(deblocks)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @property
    def bev_channels(self) -> int:
        """Channels of the concatenated output (512 at the paper's settings)."""
        return sum(self.out_channels)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Resample and concatenate.

        Args:
            feats: one map per stage, (B, in_channels[i], H_i, W_i), with
                H_i * upsample_strides[i] equal for all i.

        Returns:
            A one-element list (mmdet3d's neck convention) holding
            (B, sum(out_channels), H, W).
        """
        if len(feats) != len(self.deblocks):
            raise ValueError(f"SECONDFPN built for {len(self.deblocks)} stages, got {len(feats)}")
        ups = [deblock(x) for deblock, x in zip(self.deblocks, feats)]
        sizes = {tuple(u.shape[-2:]) for u in ups}
        if len(sizes) != 1:
            raise ValueError(f"stages resampled to different sizes {sorted(sizes)}; check "
                             f"upsample_strides {self.upsample_strides} against the backbone")
        return [torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]]
