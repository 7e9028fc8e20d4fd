"""Chest X-ray image encoders for MGCA: one global feature and a set of local patches.

Both encoders return :class:`ImageFeatures`: the global feature (ResNet: pooled layer4;
ViT: the CLS token), the local patch features used by token alignment (ResNet: the layer3
map, one patch per position; ViT: the patch tokens) and each patch's weight in that loss
(uniform for ResNet; the last block's CLS->patch attention for ViT, MGCA Sec. 3.2).
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from monai.networks.nets import ViT
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

__all__ = ["ImageFeatures", "ResNetImageEncoder", "ViTImageEncoder"]

logger = logging.getLogger(__name__)

# depth -> (block, blocks per stage), the torchvision / He et al. variants.
_RESNET_DEPTHS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (ResNetBlock, [2, 2, 2, 2]), 34: (ResNetBlock, [3, 4, 6, 3]),
    50: (ResNetBottleneck, [3, 4, 6, 3]), 101: (ResNetBottleneck, [3, 4, 23, 3]),
    152: (ResNetBottleneck, [3, 8, 36, 3]),
}
_STAGE_PLANES = [64, 128, 256, 512]


class ImageFeatures(NamedTuple):
    """What an image encoder returns (unpacks like a tuple)."""

    global_features: Tensor  # (B, C_global)
    local_features: Tensor  # (B, N, C_local)
    patch_weights: Tensor  # (B, N), each row sums to 1


@MODELS.register_module()
class ResNetImageEncoder(nn.Module):
    """MONAI's 2D ResNet with torchvision parameter names (conv1, bn1, layer1..4).

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: image channels (1 for chest X-rays).
        pretrained_path: optional state dict (torchvision names; a ``fc.*`` head is
            ignored). A 3-channel ``conv1`` is summed over its input channels when
            ``in_channels == 1`` (same response to a grey image replicated to RGB).
        local_stage: the stage whose map gives the local patches: 3 (MGCA, stride 16) or
            2 (stride 8, a finer grid with a smaller receptive field, which can ground
            words more tightly but gives the global features less context for thin
            structures).

    Attributes:
        global_dims: 2048 (bottleneck) or 512 (basic block).
        local_dims: the local stage's channels: layer3 1024 or 256, layer2 512 or 128.
    """

    def __init__(self, depth: int = 50, in_channels: int = 1,
                 pretrained_path: str | None = None, local_stage: int = 3) -> None:
        super().__init__()
        if depth not in _RESNET_DEPTHS:
            raise ValueError(f"unsupported ResNet depth {depth}; use one of {sorted(_RESNET_DEPTHS)}")
        if local_stage not in (2, 3):
            raise ValueError(f"local_stage must be 2 or 3, got {local_stage}")
        self.local_stage = local_stage
        block, layers = _RESNET_DEPTHS[depth]
        # conv1 7x7 stride 2 + max pool + shortcut "B" (1x1 conv) is the torchvision layout,
        # so ImageNet weights load by name; no fc, we only need the features.
        self.resnet = ResNet(block=block, layers=layers, block_inplanes=_STAGE_PLANES,
                             spatial_dims=2, n_input_channels=in_channels, conv1_t_size=7,
                             conv1_t_stride=2, shortcut_type="B", feed_forward=False,
                             bias_downsample=False)
        self.global_dims = _STAGE_PLANES[3] * block.expansion
        self.local_dims = _STAGE_PLANES[local_stage - 1] * block.expansion
        if pretrained_path is not None:
            self.load_pretrained(pretrained_path)

    def load_pretrained(self, path: str) -> None:
        """Load torchvision-named weights from `path` (see the class docstring; the key map
        is ``torchvision_resnet`` of :mod:`interlace.core.engine.weight_conversion`).

        Raises:
            KeyError: a ResNet weight is missing from the file.
        """
        from interlace.core.engine.weight_conversion import load_published_weights

        report = load_published_weights(self, path, "torchvision_resnet", target_prefix="")
        if report.missing or report.shape_mismatched:
            raise KeyError(f"{path}: ResNet weights missing or of another shape: "
                           f"{report.summary()}")
        if report.unexpected:
            logger.warning("%s: ignored %d unexpected keys, e.g. %s", path,
                           len(report.unexpected), report.unexpected[:3])

    def forward(self, images: Tensor) -> ImageFeatures:
        """Encode images.

        Args:
            images: (B, in_channels, H, W).

        Returns:
            :class:`ImageFeatures`: global (B, global_dims) = average-pooled layer4;
            local (B, N, local_dims) = layer3 map with N = (H / 16) * (W / 16) positions
            (19 x 19 at 299 px, 14 x 14 at 224 px), or the layer2 map with
            N = (H / 8) * (W / 8) when ``local_stage=2``; uniform patch weights (B, N).
        """
        net = self.resnet
        x = net.act(net.bn1(net.conv1(images)))
        x = net.maxpool(x)
        stage2 = net.layer2(net.layer1(x))
        stage3 = net.layer3(stage2)
        global_features = net.avgpool(net.layer4(stage3)).flatten(1)
        local = stage3 if self.local_stage == 3 else stage2
        local_features = local.flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, h*w, C)
        num_patches = local_features.shape[1]
        weights = local_features.new_full((images.shape[0], num_patches), 1.0 / num_patches)
        return ImageFeatures(global_features, local_features, weights)


@MODELS.register_module()
class ViTImageEncoder(nn.Module):
    """MONAI's 2D ViT with a CLS token (ViT-B/16 by default).

    Args:
        img_size: square input size.
        patch_size: square patch size; N = (img_size / patch_size) ** 2 patches.
        hidden_size, num_layers, num_heads: transformer size; mlp_dim = 4 * hidden_size.
        in_channels: image channels.
        dropout_rate: dropout inside the transformer.

    Attributes:
        global_dims, local_dims: both ``hidden_size``.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, hidden_size: int = 768,
                 num_layers: int = 12, num_heads: int = 12, in_channels: int = 1,
                 dropout_rate: float = 0.0) -> None:
        super().__init__()
        # classification=True only to get MONAI's CLS token; save_attn=True keeps each
        # block's attention matrix (detached) for the CLS->patch weights.
        self.vit = ViT(in_channels=in_channels, img_size=(img_size, img_size),
                       patch_size=(patch_size, patch_size), hidden_size=hidden_size,
                       mlp_dim=4 * hidden_size, num_layers=num_layers, num_heads=num_heads,
                       proj_type="conv", classification=True, dropout_rate=dropout_rate,
                       spatial_dims=2, qkv_bias=True, save_attn=True)
        # The classification head is never used; removing it avoids unused parameters
        # (which DDP would reject) and dead weights in checkpoints.
        self.vit.classification_head = nn.Identity()
        for block in self.vit.blocks:
            # MONAI builds this norm even without cross-attention, and never uses it then.
            if not block.with_cross_attention:
                block.norm_cross_attn = nn.Identity()
        self.global_dims = self.local_dims = hidden_size
        self.num_patches = (img_size // patch_size) ** 2

    def load_pretrained(self, path: str, strict: bool = False):
        """Load a timm / DeiT / BLIP ViT file (``timm_vit`` of
        :mod:`interlace.core.engine.weight_conversion`: ``pos_embed``'s CLS row folded into
        ``cls_token``, RGB patch weights summed for a one-channel input); returns the
        :class:`~interlace.core.engine.weight_conversion.WeightLoadReport`."""
        from interlace.core.engine.weight_conversion import load_published_weights

        return load_published_weights(self, path, "timm_vit", target_prefix="", strict=strict)

    def forward(self, images: Tensor) -> ImageFeatures:
        """Encode images.

        Args:
            images: (B, in_channels, img_size, img_size).

        Returns:
            :class:`ImageFeatures`: global (B, D) = final-norm CLS token; local (B, N, D) =
            final-norm patch tokens; patch weights (B, N) = the last block's attention from
            CLS to each patch, averaged over heads and renormalised over the patches
            (the CLS->CLS share is dropped).
        """
        vit = self.vit
        x = vit.patch_embedding(images)
        x = torch.cat((vit.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for block in vit.blocks:
            x = block(x)
        x = vit.norm(x)
        attention = vit.blocks[-1].attn.att_mat  # (B, heads, 1 + N, 1 + N), detached
        weights = attention[:, :, 0, 1:].mean(dim=1)
        weights = weights / weights.sum(dim=1, keepdim=True)
        return ImageFeatures(x[:, 0], x[:, 1:], weights)
