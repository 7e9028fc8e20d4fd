"""Per-date spatial backbones for satellite image bands, sized from CPU tests to GPUs.

Each maps (N, C_in, H, W) to a feature map (N, out_channels, H / stride, W / stride) and
exposes ``out_channels`` and ``stride``, the contract of
:class:`interlace.core.temporal.FactorizedSpatioTemporalEncoder`. Inputs are the bands of
one sensor: Sentinel-2 (10: B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12),
Sentinel-1 (2: VV, VH) or a high-resolution image (3-4: R, G, B[, NIR]).

Normalisation is GroupNorm, not BatchNorm: the encoder folds dates into the batch, and
batch statistics would let the values of a padded or cloudy date leak into the features
of the other dates (and break the exact masking the temporal encoder guarantees).
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from monai.networks.nets import ViT
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck
from monai.networks.nets.swin_unetr import SwinTransformer
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["ConvSpatialEncoder", "ResNetSpatialEncoder", "ViTSpatialEncoder",
           "SwinSpatialEncoder"]


def _groups(channels: int, wanted: int = 8) -> int:
    """The largest group count <= `wanted` that divides `channels`."""
    return math.gcd(channels, wanted)


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(_groups(out_channels), out_channels), nn.GELU())


@MODELS.register_module()
class ConvSpatialEncoder(nn.Module):
    """A small conv net: a 3x3 stem, then stride-2 blocks up to `stride`, then refinement.

    Args:
        in_channels: bands of the sensor.
        out_channels: feature channels.
        stride: 1, 2 or 4 (input pixels per feature pixel).
        num_blocks: 3x3 conv blocks after the downsampling.
    """

    def __init__(self, in_channels: int, out_channels: int = 64, stride: int = 2,
                 num_blocks: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2, 4):
            raise ValueError(f"stride must be 1, 2 or 4, got {stride}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        hidden = max(out_channels // 2, 8)
        layers = [_conv_block(in_channels, hidden, 1)]
        channels = hidden
        for _ in range(int(math.log2(stride))):
            layers.append(_conv_block(channels, out_channels, 2))
            channels = out_channels
        layers += [_conv_block(channels, out_channels, 1) for _ in range(num_blocks)]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, C_in, H, W) -> (N, out_channels, H / stride, W / stride)."""
        return self.layers(images)


@MODELS.register_module()
class ResNetSpatialEncoder(nn.Module):
    """MONAI's 2D ResNet, truncated after `num_stages` stages, with GroupNorm.

    The stride is ``stem_stride * (2 if max_pool) * 2 ** (num_stages - 1)``; the defaults
    (stem stride 1, no max pool, 2 stages) give stride 2, suited to 10 m Sentinel pixels
    where a 4x4 pixel cell is already 40 m.

    Args:
        in_channels: bands of the sensor.
        depth: 18 or 34 (basic blocks) or 50 (bottleneck).
        num_stages: 1..4 stages kept.
        stem_stride: stride of the 7x7 stem convolution (1 or 2).
        max_pool: keep the stem's stride-2 max pool.
        width: channels of the first stage (torchvision: 64).
    """

    _DEPTHS = {18: (ResNetBlock, [2, 2, 2, 2]), 34: (ResNetBlock, [3, 4, 6, 3]),
               50: (ResNetBottleneck, [3, 4, 6, 3])}

    def __init__(self, in_channels: int, depth: int = 18, num_stages: int = 2,
                 stem_stride: int = 1, max_pool: bool = False, width: int = 64) -> None:
        super().__init__()
        if depth not in self._DEPTHS:
            raise ValueError(f"depth must be one of {sorted(self._DEPTHS)}, got {depth}")
        if not 1 <= num_stages <= 4:
            raise ValueError(f"num_stages must be 1..4, got {num_stages}")
        block, layers = self._DEPTHS[depth]
        planes = [width * 2 ** i for i in range(4)]
        groups = _groups(width)
        self.resnet = ResNet(block=block, layers=layers, block_inplanes=planes, spatial_dims=2,
                             n_input_channels=in_channels, conv1_t_size=7,
                             conv1_t_stride=stem_stride, no_max_pool=not max_pool,
                             feed_forward=False, norm=("group", {"num_groups": groups}))
        self.num_stages = num_stages
        self.out_channels = planes[num_stages - 1] * block.expansion
        self.stride = stem_stride * (2 if max_pool else 1) * 2 ** (num_stages - 1)
        # Drop the stages we never run, so they hold no parameters without gradients.
        for index in range(num_stages + 1, 5):
            delattr(self.resnet, f"layer{index}")

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, C_in, H, W) -> (N, out_channels, H / stride, W / stride)."""
        net = self.resnet
        x = net.act(net.bn1(net.conv1(images)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        for index in range(1, self.num_stages + 1):
            x = getattr(net, f"layer{index}")(x)
        return x


@MODELS.register_module()
class ViTSpatialEncoder(nn.Module):
    """MONAI's 2D ViT; the patch tokens reshaped to a map (stride = patch size).

    SkySense uses ViT-L for Sentinel-2 and Sentinel-1; here the size is an argument
    (``hidden_size=1024, mlp_dim=4096, num_layers=24, num_heads=16`` is ViT-L). The
    position embedding is learned for `image_size` and bilinearly resized for other input
    sizes (any multiple of the patch), so pre-training crops and full chips both work.

    Args:
        in_channels: bands of the sensor.
        image_size: H = W the position embedding is learned for.
        patch_size: the stride.
        hidden_size, mlp_dim, num_layers, num_heads: the transformer.
    """

    def __init__(self, in_channels: int, image_size: int = 32, patch_size: int = 4,
                 hidden_size: int = 64, mlp_dim: int = 128, num_layers: int = 2,
                 num_heads: int = 4) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of "
                             f"patch_size {patch_size}")
        self.vit = ViT(in_channels=in_channels, img_size=image_size, patch_size=patch_size,
                       hidden_size=hidden_size, mlp_dim=mlp_dim, num_layers=num_layers,
                       num_heads=num_heads, spatial_dims=2, classification=False)
        self.image_size, self.out_channels, self.stride = image_size, hidden_size, patch_size

    def _position_embedding(self, height: int, width: int) -> Tensor:
        """(1, h * w, hidden) position embedding for an h x w patch grid."""
        embedding = self.vit.patch_embedding.position_embeddings  # (1, s * s, hidden)
        side = self.image_size // self.stride
        if (height, width) == (side, side):
            return embedding
        grid = embedding.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, C_in, H, W), H and W multiples of the patch -> (N, hidden_size,
        H / patch, W / patch)."""
        if images.shape[-2] % self.stride or images.shape[-1] % self.stride:
            raise ValueError(f"ViTSpatialEncoder needs sizes that are multiples of "
                             f"{self.stride}, got {tuple(images.shape[-2:])}")
        embed = self.vit.patch_embedding
        patches = embed.patch_embeddings(images)  # (N, hidden, h, w)
        height, width = patches.shape[-2:]
        tokens = patches.flatten(2).transpose(1, 2) + self._position_embedding(height, width)
        tokens = embed.dropout(tokens)
        for block in self.vit.blocks:
            tokens = block(tokens)
        tokens = self.vit.norm(tokens)
        return tokens.transpose(1, 2).reshape(images.shape[0], -1, height, width)


@MODELS.register_module()
class SwinSpatialEncoder(nn.Module):
    """MONAI's 2D Swin transformer, read out after stage `out_stage` (later stages dropped).

    SkySense encodes the high-resolution image with Swin-V2-H; MONAI has Swin (v1 blocks;
    its ``use_v2`` adds a residual conv block per stage, which is *not* Microsoft's
    Swin-V2), so this is the closest available. Stage k ends with patch merging:
    stride ``patch_size * 2 ** out_stage``, ``embed_dims * 2 ** out_stage`` channels.

    Args:
        in_channels: bands (3-4 for a high-resolution image).
        embed_dims: channels after the patch embedding (Swin-T 96, Swin-V2-H 352).
        depths, num_heads: blocks and heads of the four stages.
        window_size: attention window.
        patch_size: stride of the patch embedding.
        out_stage: 1..4, the stage whose (merged) output is returned.
        use_v2: MONAI's residual-conv variant (see above).
    """

    def __init__(self, in_channels: int, embed_dims: int = 24,
                 depths: tuple[int, ...] = (2, 2, 2, 2),
                 num_heads: tuple[int, ...] = (3, 6, 12, 24),
                 window_size: int = 4, patch_size: int = 2, out_stage: int = 1,
                 use_v2: bool = False) -> None:
        super().__init__()
        if not 1 <= out_stage <= 4:
            raise ValueError(f"out_stage must be 1..4, got {out_stage}")
        self.swin = SwinTransformer(in_chans=in_channels, embed_dim=embed_dims,
                                    window_size=(window_size, window_size),
                                    patch_size=(patch_size, patch_size), depths=tuple(depths),
                                    num_heads=tuple(num_heads), spatial_dims=2, use_v2=use_v2)
        self.out_stage = out_stage
        self.out_channels = embed_dims * 2 ** out_stage
        self.stride = patch_size * 2 ** out_stage
        for index in range(out_stage + 1, 5):  # never run: no parameters without gradients
            delattr(self.swin, f"layers{index}")
            if use_v2:
                delattr(self.swin, f"layers{index}c")

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, C_in, H, W) -> (N, out_channels, H / stride, W / stride)."""
        swin = self.swin
        x = swin.pos_drop(swin.patch_embed(images))
        for index in range(1, self.out_stage + 1):
            if swin.use_v2:
                x = getattr(swin, f"layers{index}c")[0](x.contiguous())
            x = getattr(swin, f"layers{index}")[0](x.contiguous())
        return swin.proj_out(x, normalize=True)
