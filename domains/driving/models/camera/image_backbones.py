"""Camera image backbones for the driving detectors: MONAI networks wrapped to return
multi-scale feature maps at strides 4, 8, 16 and 32 (DeepInteraction: ResNet-50;
DeepInteraction++: Swin-T).

Both take one batch of images ``(N, 3, H, W)`` and return a tuple of maps, one per entry of
``out_indices``, of size ``ceil(H / stride) x ceil(W / stride)``. A multi-camera detector
folds its views into the batch, ``(B, V, 3, H, W) -> (B * V, 3, H, W)``, before calling
them (see :class:`MultiViewImageEncoder`), so a batch of 2 samples x 6 views is 12 images
and BatchNorm statistics are taken over all of them.

Pretrained weights load from local files (:mod:`.pretrained_weights` documents the key
mapping from torchvision / official Swin / timm / mmdet names).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck
from monai.networks.nets.swin_unetr import SwinTransformer, compute_mask, get_window_size
from torch import Tensor, nn

from interlace.core.engine.checkpoint import LoadReport, PathLike
from interlace.core.engine.registry import MODELS

from .pretrained_weights import (convert_resnet_state_dict, convert_swin_state_dict,
                                 load_converted_weights)

__all__ = ["MonaiResNetBackbone", "MonaiSwinBackbone"]

# depth -> (block, blocks per stage), the He et al. / torchvision variants.
_RESNET_DEPTHS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (ResNetBlock, [2, 2, 2, 2]), 34: (ResNetBlock, [3, 4, 6, 3]),
    50: (ResNetBottleneck, [3, 4, 6, 3]), 101: (ResNetBottleneck, [3, 4, 23, 3]),
}
_RESNET_PLANES = [64, 128, 256, 512]
_STAGE_STRIDES = (4, 8, 16, 32)


def _check_out_indices(out_indices: Sequence[int], num_stages: int) -> tuple[int, ...]:
    indices = tuple(sorted(set(out_indices)))
    if not indices or indices[0] < 0 or indices[-1] >= num_stages:
        raise ValueError(f"out_indices {tuple(out_indices)} must be a non-empty subset of "
                         f"range({num_stages})")
    return indices


def _freeze(module: nn.Module) -> None:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)


@MODELS.register_module()
class MonaiResNetBackbone(nn.Module):
    """MONAI's 2D ResNet (torchvision layout: 7x7 stem, max pool, shortcut "B", stride on
    the 3x3 conv) returning stage outputs, as mmdet's ``ResNet`` backbone does.

    Args:
        depth: 18, 34, 50 or 101.
        in_channels: image channels.
        out_indices: stages to return (0-3 = layer1-layer4, strides 4/8/16/32). Stages
            after the last one requested are not built (nothing unused for DDP).
        frozen_stages: -1 trains everything; 0 freezes the stem (conv1, bn1); k >= 1
            also freezes layer1..layer k (no gradients, kept in eval mode).
        norm_eval: keep every BatchNorm in eval mode while training (running statistics
            stay those of the pretrained weights; small per-GPU batches would spoil them).
            Its affine parameters still train unless frozen.
        pretrained: optional local weights file (torchvision/mmdet names, see
            :mod:`.pretrained_weights`); ``pretrained_prefix`` selects the backbone in a
            detector checkpoint (e.g. ``'img_backbone.'``).

    Attributes:
        out_channels: channels of each returned map (ResNet-50: 256, 512, 1024, 2048).
        out_strides: stride of each returned map.
    """

    def __init__(self, depth: int = 50, in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_eval: bool = True, pretrained: Optional[str] = None,
                 pretrained_prefix: Optional[str] = None) -> None:
        super().__init__()
        if depth not in _RESNET_DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth}; use one of {sorted(_RESNET_DEPTHS)}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
        block, layers = _RESNET_DEPTHS[depth]
        self.out_indices = _check_out_indices(out_indices, 4)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.resnet = ResNet(block=block, layers=layers, block_inplanes=_RESNET_PLANES,
                             spatial_dims=2, n_input_channels=in_channels, conv1_t_size=7,
                             conv1_t_stride=2, shortcut_type="B", feed_forward=False,
                             bias_downsample=False)
        self.num_stages = self.out_indices[-1] + 1
        for stage in range(self.num_stages, 4):
            setattr(self.resnet, f"layer{stage + 1}", None)
        expansion = getattr(block, "expansion", 1)
        self.out_channels = tuple(_RESNET_PLANES[i] * expansion for i in self.out_indices)
        self.out_strides = tuple(_STAGE_STRIDES[i] for i in self.out_indices)
        if pretrained is not None:
            self.load_pretrained(pretrained, source_prefix=pretrained_prefix)
        self._freeze_stages()

    def _stages(self) -> list[nn.Module]:
        return [getattr(self.resnet, f"layer{i + 1}") for i in range(self.num_stages)]

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            for module in (self.resnet.conv1, self.resnet.bn1):
                _freeze(module)
        for stage in self._stages()[:max(self.frozen_stages, 0)]:
            _freeze(stage)

    def train(self, mode: bool = True) -> "MonaiResNetBackbone":
        """Switch mode, keeping frozen stages (and, with ``norm_eval``, all BN) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def load_pretrained(self, path: PathLike, source_prefix: Optional[str] = None,
                        strict: bool = False) -> LoadReport:
        """Load torchvision/mmdet-named ResNet weights (``fc.*`` dropped) from `path`."""
        return load_converted_weights(self, path, convert_resnet_state_dict,
                                      source_prefix=source_prefix, strict=strict)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """Encode a batch of images.

        Args:
            images: (N, in_channels, H, W); any H, W.

        Returns:
            One map per ``out_indices`` entry: (N, out_channels[k], ceil(H / s), ceil(W / s))
            with s = out_strides[k].
        """
        net = self.resnet
        x = net.maxpool(net.act(net.bn1(net.conv1(images))))
        outputs = []
        for index, stage in enumerate(self._stages()):
            x = stage(x)
            if index in self.out_indices:
                outputs.append(x)
        return tuple(outputs)


@MODELS.register_module()
class MonaiSwinBackbone(nn.Module):
    """MONAI's 2D ``SwinTransformer`` returning the four stage outputs, each through its
    own LayerNorm, as Swin detection backbones do (Swin-T by default: embed 96, depths
    2-2-6-2, heads 3-6-12-24, window 7, patch 4; channels 96/192/384/768 at strides
    4/8/16/32).

    MONAI's own ``SwinTransformer.forward(x, normalize)`` is not used: it returns the patch
    embedding and the *merged* (downsampled) output of each stage, i.e. maps at strides
    4-64 with channels C..16C, the stride-4 one coming before any attention block; its
    ``normalize=True`` is a LayerNorm over channels without learnable scale and shift.
    Here each stage's blocks run on their own and the map is taken *before* the patch
    merging, then normalised by a learnable LayerNorm (``output_norms``, the ``norm{i}``
    of official/mmdet Swin detection weights). The merging after the last stage, which
    official Swin does not have, is removed, as are stages after the last one requested.

    Any input size works: the image is padded at the bottom/right to a multiple of
    ``patch_size * 2 ** 3`` (32) so every stage has exact sizes, and each output is cropped
    back to ``ceil(H / stride) x ceil(W / stride)`` (the sizes ResNet gives). Stage maps
    that are not multiples of the window are padded inside MONAI's blocks; a stage map
    no larger than the window in some dimension shrinks the window to it and is not
    shifted (MONAI's behaviour; at 448 x 800 the stride-32 map is 14 x 25, never affected).

    Args:
        in_channels: image channels.
        embed_dim, depths, num_heads, window_size, patch_size, mlp_ratio: the Swin variant.
        drop_path_rate: stochastic depth, rising linearly over the blocks (0.2 in mmdet's
            Swin-T detection configs).
        out_indices: stages to return (0-3).
        frozen_stages: -1 trains everything; 0 freezes the patch embedding; k >= 1 also
            freezes stages 0..k-1 with their merging and output norms.
        use_checkpoint: gradient checkpointing in every block (memory for compute).
        use_flash_attention: MONAI's ``scaled_dot_product_attention`` path, used only when
            autograd is off (inference).
        pretrained: optional local weights file (official / timm / mmdet Swin, see
            :mod:`.pretrained_weights`); ``pretrained_format`` ``'auto'`` detects which;
            ``pretrained_prefix`` selects the backbone in a detector checkpoint.

    Attributes:
        out_channels, out_strides: per returned map.
    """

    def __init__(self, in_channels: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, patch_size: int = 4, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.2, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, use_checkpoint: bool = False,
                 use_flash_attention: bool = False, pretrained: Optional[str] = None,
                 pretrained_format: str = "auto", pretrained_prefix: Optional[str] = None) -> None:
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError("MONAI's SwinTransformer has exactly 4 stages: give 4 depths and 4 head counts")
        self.out_indices = _check_out_indices(out_indices, 4)
        self.frozen_stages = frozen_stages
        self.patch_size = patch_size
        self.swin = SwinTransformer(
            in_chans=in_channels, embed_dim=embed_dim, window_size=(window_size, window_size),
            patch_size=(patch_size, patch_size), depths=list(depths), num_heads=list(num_heads),
            mlp_ratio=mlp_ratio, qkv_bias=True, drop_path_rate=drop_path_rate,
            patch_norm=True, use_checkpoint=use_checkpoint, spatial_dims=2,
            downsample="merging", use_flash_attention=use_flash_attention)
        self.num_stages = self.out_indices[-1] + 1
        for stage in range(self.num_stages, 4):
            setattr(self.swin, f"layers{stage + 1}", nn.ModuleList())
        self._stages()[-1].downsample = None
        dims = [embed_dim * 2 ** i for i in range(4)]
        self.output_norms = nn.ModuleDict({str(i): nn.LayerNorm(dims[i]) for i in self.out_indices})
        self.out_channels = tuple(dims[i] for i in self.out_indices)
        self.out_strides = tuple(patch_size * 2 ** i for i in self.out_indices)
        self.pretrained_format = pretrained_format
        if pretrained is not None:
            self.load_pretrained(pretrained, source_format=pretrained_format,
                                 source_prefix=pretrained_prefix)
        self._freeze_stages()

    def _stages(self) -> list[nn.Module]:
        """The MONAI ``BasicLayer`` of each built stage."""
        return [getattr(self.swin, f"layers{i + 1}")[0] for i in range(self.num_stages)]

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            _freeze(self.swin.patch_embed)
        for index, stage in enumerate(self._stages()[:max(self.frozen_stages, 0)]):
            _freeze(stage)
            if str(index) in self.output_norms:
                _freeze(self.output_norms[str(index)])

    def train(self, mode: bool = True) -> "MonaiSwinBackbone":
        """Switch mode, keeping frozen parts in eval (no dropout or drop-path there)."""
        super().train(mode)
        self._freeze_stages()
        return self

    def load_pretrained(self, path: PathLike, source_format: str = "auto",
                        source_prefix: Optional[str] = None, strict: bool = False) -> LoadReport:
        """Load official / timm / mmdet Swin weights from `path` (key table in
        :mod:`.pretrained_weights`)."""
        return load_converted_weights(
            self, path, lambda state: convert_swin_state_dict(state, source_format),
            source_prefix=source_prefix, strict=strict)

    @staticmethod
    def _run_blocks(stage: nn.Module, x: Tensor) -> Tensor:
        """A stage's attention blocks without its patch merging (MONAI's ``BasicLayer``
        forward does both). x: (N, h, w, C) channels-last, returned the same."""
        _, height, width, _ = x.shape
        window, shift = get_window_size((height, width), stage.window_size, stage.shift_size)
        padded = [int(np.ceil(size / w)) * w for size, w in zip((height, width), window)]
        mask = compute_mask(padded, window, shift, x.device)
        for block in stage.blocks:
            x = block(x, mask)
        return x

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """Encode a batch of images.

        Args:
            images: (N, in_channels, H, W); any H, W.

        Returns:
            One map per ``out_indices`` entry: (N, out_channels[k], ceil(H / s), ceil(W / s))
            with s = out_strides[k] (Swin-T: 96/192/384/768 channels at 4/8/16/32).
        """
        height, width = images.shape[-2:]
        multiple = self.patch_size * 2 ** 3
        pad_bottom, pad_right = -height % multiple, -width % multiple
        if pad_bottom or pad_right:
            images = F.pad(images, (0, pad_right, 0, pad_bottom))
        x = self.swin.pos_drop(self.swin.patch_embed(images))  # (N, C, H/4, W/4)
        x = x.permute(0, 2, 3, 1)  # MONAI's blocks and merging work channels-last
        outputs = []
        for index, stage in enumerate(self._stages()):
            x = self._run_blocks(stage, x)
            if index in self.out_indices:
                stride = self.patch_size * 2 ** index
                out = self.output_norms[str(index)](x)[:, :math.ceil(height / stride),
                                                       :math.ceil(width / stride)]
                outputs.append(out.permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        return tuple(outputs)
