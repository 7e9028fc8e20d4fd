"""SECOND-style sparse 3D encoder of the LiDAR stream (mmdet3d's ``SparseEncoder``), on
spconv through :mod:`interlace.core.ops.sparse_conv` (whose CPU fixes make the backward
pass work on CPU).

Layout (TransFusion-L / DeepInteraction++ on nuScenes; docs/methods/deepinteraction.md,
"LiDAR stream")::

    conv_input      SubMConv3d in -> 16, BN, ReLU                      [41, 1440, 1440]
    encoder_layer1  2 x residual SubM block (16), SparseConv3d s2 -> 32 [21, 720, 720]
    encoder_layer2  2 x residual SubM block (32), SparseConv3d s2 -> 64 [11, 360, 360]
    encoder_layer3  2 x residual SubM block (64), SparseConv3d s2 -> 128, z pad 0
                                                                        [5, 180, 180]
    encoder_layer4  2 x residual SubM block (128)                       [5, 180, 180]
    conv_out        SparseConv3d (3, 1, 1) stride (2, 1, 1) -> 128      [2, 180, 180]
    flatten         dense (B, 128, 2, 180, 180) -> (B, 256, 180, 180)   BEV, stride 8

Module and parameter names follow mmdet3d's (``conv_input.0``, ``encoder_layers.
encoder_layer1.0.conv1``, ``conv_out.0``, ...) so TransFusion-L checkpoints map key by key.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.ops.sparse_conv import SPCONV_AVAILABLE, spconv

__all__ = ["SparseEncoderSECOND", "SparseResidualBlock"]

Padding = Union[int, Sequence[int]]
_SparseModule = spconv.SparseModule if SPCONV_AVAILABLE else nn.Module


def _require_spconv() -> None:
    if not SPCONV_AVAILABLE:
        raise ImportError("SparseEncoderSECOND needs spconv: pip install spconv (CPU) or the "
                          "spconv-cu12x wheel matching your CUDA")


def _triple(value: Padding) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"expected an int or 3 values (z, y, x), got {value}")
    return out  # type: ignore[return-value]


def _norm(channels: int, norm_cfg: dict) -> nn.BatchNorm1d:
    kind = norm_cfg.get("type", "BN1d")
    if kind not in ("BN1d", "BN"):
        raise ValueError(f"SparseEncoderSECOND supports norm_cfg type 'BN1d', got {kind!r}")
    return nn.BatchNorm1d(channels, eps=norm_cfg.get("eps", 1e-3),
                          momentum=norm_cfg.get("momentum", 0.01))


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: Padding, norm_cfg: dict,
                  stride: Padding = 1, padding: Padding = 0, indice_key: Optional[str] = None,
                  submanifold: bool = False) -> Any:
    """Sparse conv (no bias: BN follows) + BN + ReLU, as mmdet3d's sparse ConvModule."""
    conv_type = spconv.SubMConv3d if submanifold else spconv.SparseConv3d
    conv = conv_type(in_channels, out_channels, kernel, stride=stride, padding=padding,
                     bias=False, indice_key=indice_key)
    return spconv.SparseSequential(conv, _norm(out_channels, norm_cfg), nn.ReLU(inplace=True))


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class SparseResidualBlock(_SparseModule):
    """Two submanifold 3 x 3 x 3 convs with BN and a residual connection (mmdet3d's
    ``SparseBasicBlock``); keeps the active sites and the channel count.

    Args:
        channels: input = output channels.
        norm_cfg: ``dict(type='BN1d', eps, momentum)``.
        indice_key: spconv key shared by the submanifold convs of one resolution, so the
            neighbour lists are computed once per resolution instead of per conv.
    """

    def __init__(self, channels: int, norm_cfg: dict, indice_key: Optional[str] = None) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False,
                                       indice_key=indice_key)
        self.bn1 = _norm(channels, norm_cfg)
        self.conv2 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False,
                                       indice_key=indice_key)
        self.bn2 = _norm(channels, norm_cfg)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Any) -> Any:
        """x: SparseConvTensor with features (N, C) -> SparseConvTensor, same sites, (N, C)."""
        identity = x.features
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.relu(self.bn2(out.features) + identity))
        return out


@MODELS.register_module()
class SparseEncoderSECOND(nn.Module):
    """Voxel features -> dense BEV map through submanifold and strided sparse 3D convs.

    Args:
        in_channels: voxel feature channels (5: mean x, y, z, intensity, time lag).
        sparse_shape: (D, H, W) voxel grid, z first: 41 x 1440 x 1440 for 0.075 m / 0.2 m
            voxels over [-54, 54] m x [-5, 3] m (one more z cell than the 40 voxel layers,
            as mmdet3d; the extra layer stays empty). A tiny config may use [41, 256, 256].
        base_channels: channels of ``conv_input``.
        output_channels: channels of ``conv_out``; the BEV has output_channels x D_out.
        encoder_channels: per stage, the channels of its blocks.
        encoder_paddings: per stage and block, the padding of a strided conv (int or
            (z, y, x)); ignored for submanifold blocks, which always pad 1.
        encoder_strides: per stage, the stride of its strided conv; 1 = no strided conv.
            Default: mmdet3d's layout, (2, ..., 2, 1) for ``'basicblock'`` (strided conv
            last in each stage but the last) and (1, 2, ..., 2) for ``'conv_module'``
            (strided conv first in each stage but the first).
        block_type: ``'basicblock'`` (residual blocks, TransFusion-L / DeepInteraction++)
            or ``'conv_module'`` (plain SubM conv + BN + ReLU, SECOND).
        norm_cfg: ``dict(type='BN1d', eps=1e-3, momentum=0.01)``.

    Attributes:
        bev_channels: C_out x D_out of the flattened output (256 at the defaults).
        bev_shape: (H_out, W_out) of the output (180 x 180 at the defaults).
    """

    def __init__(self, in_channels: int = 5,
                 sparse_shape: Sequence[int] = (41, 1440, 1440),
                 base_channels: int = 16, output_channels: int = 128,
                 encoder_channels: Sequence[Sequence[int]] = ((16, 16, 32), (32, 32, 64),
                                                              (64, 64, 128), (128, 128)),
                 encoder_paddings: Sequence[Sequence[Padding]] = ((0, 0, 1), (0, 0, 1),
                                                                  (0, 0, (0, 1, 1)), (0, 0)),
                 encoder_strides: Optional[Sequence[int]] = None,
                 block_type: str = "basicblock",
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        _require_spconv()
        if block_type not in ("basicblock", "conv_module"):
            raise ValueError(f"block_type must be 'basicblock' or 'conv_module', "
                             f"got {block_type!r}")
        if len(sparse_shape) != 3:
            raise ValueError(f"sparse_shape must be (D, H, W), got {sparse_shape}")
        num_stages = len(encoder_channels)
        if len(encoder_paddings) != num_stages or any(
                len(p) != len(c) for p, c in zip(encoder_paddings, encoder_channels)):
            raise ValueError("encoder_paddings must have one entry per block of encoder_channels")
        if encoder_strides is None:
            encoder_strides = ((2,) * (num_stages - 1) + (1,) if block_type == "basicblock"
                               else (1,) + (2,) * (num_stages - 1))
        if len(encoder_strides) != num_stages:
            raise ValueError(f"encoder_strides needs {num_stages} entries, got {encoder_strides}")
        norm_cfg = dict(norm_cfg or dict(type="BN1d", eps=1e-3, momentum=0.01))
        self.in_channels = int(in_channels)
        self.sparse_shape = [int(s) for s in sparse_shape]
        self.block_type = block_type
        self.encoder_strides = tuple(int(s) for s in encoder_strides)

        self.conv_input = _conv_bn_relu(in_channels, base_channels, 3, norm_cfg, padding=1,
                                        indice_key="subm1", submanifold=True)
        shape = list(self.sparse_shape)
        channels = base_channels
        self.encoder_layers = spconv.SparseSequential()
        for i, (stage, paddings) in enumerate(zip(encoder_channels, encoder_paddings)):
            stride = self.encoder_strides[i]
            # Where the stage's strided conv sits: last block (basicblock) or first.
            strided_at = (len(stage) - 1 if block_type == "basicblock" else 0) if stride > 1 else -1
            blocks = []
            for j, (out_channels, padding) in enumerate(zip(stage, paddings)):
                if j == strided_at:
                    blocks.append(_conv_bn_relu(channels, out_channels, 3, norm_cfg,
                                                stride=stride, padding=padding,
                                                indice_key=f"spconv{i + 1}"))
                    shape = [_out_size(s, 3, stride, p) for s, p in zip(shape, _triple(padding))]
                elif block_type == "basicblock":
                    if out_channels != channels:
                        raise ValueError(f"stage {i + 1} block {j + 1}: a residual block keeps "
                                         f"its channels ({channels}), got {out_channels}")
                    blocks.append(SparseResidualBlock(channels, norm_cfg,
                                                      indice_key=f"subm{i + 1}"))
                else:
                    blocks.append(_conv_bn_relu(channels, out_channels, 3, norm_cfg, padding=1,
                                                indice_key=f"subm{i + 1}", submanifold=True))
                channels = out_channels
            self.encoder_layers.add_module(f"encoder_layer{i + 1}",
                                           spconv.SparseSequential(*blocks))
        # Squeeze height before flattening: 5 z cells -> 2 at the paper's settings.
        self.conv_out = _conv_bn_relu(channels, output_channels, (3, 1, 1), norm_cfg,
                                      stride=(2, 1, 1), padding=0, indice_key="spconv_down2")
        depth = _out_size(shape[0], 3, 2, 0)
        if depth <= 0 or min(shape[1:]) <= 0:
            raise ValueError(f"sparse_shape {self.sparse_shape} is too small for "
                             f"{num_stages} stages: it shrinks to {[depth] + shape[1:]}")
        self.output_channels = int(output_channels)
        self.bev_channels = self.output_channels * depth
        self.bev_shape = (shape[1], shape[2])
        self._out_depth = depth

    def forward(self, voxel_features: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        """Encode the voxels of a batch and flatten height into channels.

        Args:
            voxel_features: (N, in_channels) float, e.g. from :class:`MeanVoxelEncoder`.
            coors: (N, 4) int, (batch, z, y, x) inside ``sparse_shape``.
            batch_size: B (samples without voxels get an all-zero map).

        Returns:
            (B, bev_channels, H_out, W_out) BEV map; channel c * D_out + d holds output
            channel c at height d (mmdet3d's order).
        """
        if voxel_features.shape[0] == 0:
            # spconv cannot build a tensor without sites (e.g. LiDAR dropped for the batch).
            return voxel_features.new_zeros((batch_size, self.bev_channels, *self.bev_shape))
        # spconv's CPU kernels have no bf16 path (KeyError: torch.bfloat16 under CPU
        # autocast), so the sparse encoder always runs in fp32; the dense layers after it
        # still use the caller's autocast.
        with torch.autocast(voxel_features.device.type, enabled=False):
            x = spconv.SparseConvTensor(voxel_features.float(), coors.int(), self.sparse_shape,
                                        batch_size)
            x = self.conv_input(x)
            x = self.encoder_layers(x)
            x = self.conv_out(x)
            dense = x.dense()                                    # (B, C, D, H, W)
        b, c, d, h, w = dense.shape
        return dense.view(b, c * d, h, w)
