"""U-Net segmentation on a pre-trained chest X-ray encoder (MGCA's downstream protocol).

MGCA evaluates its image encoder by training a U-Net decoder on top of it, the encoder
frozen, and scoring Dice on SIIM pneumothorax / RSNA pneumonia (docs/methods/mgca.md). Here the
decoder is MONAI's ``UNetDecoder`` (the decoder of ``FlexibleUNet``) fed with the
encoder's multi-scale features:

- :class:`ResNetImageEncoder`: the stem (stride 2) and layer1-4 (strides 4-32);
- :class:`ViTImageEncoder`: a single-stride (16) transformer, so four of its blocks'
  patch tokens are reshaped to maps and brought to strides 2 / 4 / 8 / 16 with
  UNETR's projection-upsampling blocks (Hatamizadeh et al. 2022), which belong to the
  trainable decoder.

The encoder starts from MGCA through the project's one way of starting from weights,
``init_cfg=dict(type='Pretrained', ...)`` (docs/weights.md):
``init_cfg=mgca_init_cfg(CKPT, image_encoder_only=True, strict=True)`` loads the
``image_encoder.*`` weights of an Interlace MGCA checkpoint, or the ``img_encoder_q.model.*``
weights of a released MGCA ``.ckpt``, into ``image_encoder`` and fails unless every
encoder weight is found. ``pretrained=CKPT`` is short for exactly that.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from monai.losses import DiceLoss
from monai.networks.blocks import UnetrBasicBlock, UnetrPrUpBlock
from monai.networks.nets.flexible_unet import SegmentationHead, UNetDecoder
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.domains.medical.data.segmentation import restore_original_size

from .data_preprocessor import CxrReportDataPreprocessor
from .published_weights import mgca_init_cfg
from .image_encoders import ResNetImageEncoder, ViTImageEncoder

__all__ = ["ViTFeaturePyramid", "CxrSegmenter"]

logger = logging.getLogger(__name__)


def _build(module: dict | nn.Module) -> nn.Module:
    return MODELS.build(module) if isinstance(module, dict) else module


def _resnet_channels(encoder: ResNetImageEncoder) -> list[int]:
    """Channels of stem, layer1..layer4 (64 then 64 / 128 / 256 / 512 x expansion)."""
    expansion = encoder.global_dims // 512
    return [64] + [planes * expansion for planes in (64, 128, 256, 512)]


def _resnet_features(encoder: ResNetImageEncoder, images: Tensor) -> list[Tensor]:
    """Stem and layer1-4 maps, strides 2, 4, 8, 16, 32."""
    net = encoder.resnet
    stem = net.act(net.bn1(net.conv1(images)))
    layer1 = net.layer1(net.maxpool(stem))
    layer2 = net.layer2(layer1)
    layer3 = net.layer3(layer2)
    return [stem, layer1, layer2, layer3, net.layer4(layer3)]


def _vit_geometry(encoder: ViTImageEncoder) -> tuple[tuple[int, int], tuple[int, int]]:
    """(input size, token grid) of the ViT: its patch conv's stride and the number of
    patches (square) fix both; the learned position embedding allows no other size."""
    patch = tuple(int(p) for p in encoder.vit.patch_embedding.patch_embeddings.stride)
    side = math.isqrt(encoder.num_patches)
    return (side * patch[0], side * patch[1]), (side, side)


def _vit_token_maps(encoder: ViTImageEncoder, images: Tensor,
                    blocks: Sequence[int]) -> list[Tensor]:
    """Patch tokens after the given blocks as (B, D, H/16, W/16) maps, shallow first.

    The last block's tokens pass the final norm, as the patch features MGCA aligns with
    words do; earlier ones are taken raw, as in UNETR.
    """
    vit = encoder.vit
    x = vit.patch_embedding(images)
    x = torch.cat((vit.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
    side_h, side_w = _vit_geometry(encoder)[1]
    wanted, maps = set(blocks), []
    for index, block in enumerate(vit.blocks):
        x = block(x)
        if index in wanted:
            tokens = vit.norm(x) if index == len(vit.blocks) - 1 else x
            maps.append(tokens[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, side_h, side_w))
    return maps


class ViTFeaturePyramid(nn.Module):
    """Four ViT token maps (stride 16) -> maps at strides 2, 4, 8 and 16 (UNETR).

    Args:
        embed_dims: the ViT's hidden size D.
        channels: output channels at strides 2, 4, 8, 16.
    """

    def __init__(self, embed_dims: int, channels: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"ViTFeaturePyramid needs 4 channel sizes, got {channels}")
        # num_layer extra 2x steps after the first 2x: strides 16 / 8, 16 / 4, 16 / 2.
        self.up = nn.ModuleList(
            UnetrPrUpBlock(spatial_dims=2, in_channels=embed_dims, out_channels=out,
                           num_layer=num_layer, kernel_size=3, stride=1,
                           upsample_kernel_size=2, norm_name="instance", conv_block=True,
                           res_block=True)
            for out, num_layer in zip(channels[:3], (2, 1, 0)))
        self.same = UnetrBasicBlock(spatial_dims=2, in_channels=embed_dims,
                                    out_channels=channels[3], kernel_size=3, stride=1,
                                    norm_name="instance", res_block=True)

    def forward(self, token_maps: Sequence[Tensor]) -> list[Tensor]:
        """Args: token_maps: four (B, D, h, w) maps, shallow block first.

        Returns: [(B, c0, 8h, 8w), (B, c1, 4h, 4w), (B, c2, 2h, 2w), (B, c3, h, w)].
        """
        return [up(t) for up, t in zip(self.up, token_maps[:3])] + [self.same(token_maps[3])]


def _loads_weights(init_cfg: Optional[dict | list]) -> bool:
    """Whether an ``init_cfg`` (a dict or a list of them) loads weights from a file."""
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg] if init_cfg else []
    return any(cfg.get("type") == "Pretrained" for cfg in cfgs)


@MODELS.register_module()
class CxrSegmenter(BaseModel):
    """Binary segmentation: pre-trained CXR encoder + U-Net decoder, Dice + BCE loss.

    Args:
        image_encoder: ``ResNetImageEncoder`` / ``ViTImageEncoder`` config or module.
        freeze_encoder: keep encoder weights and BatchNorm statistics fixed (MGCA's
            protocol); ``False`` fine-tunes it with the decoder.
        pretrained: an MGCA checkpoint (Interlace's or a released ``.ckpt``; a file or a
            work dir): short for ``init_cfg=mgca_init_cfg(pretrained,
            image_encoder_only=True, strict=True)``, applied by :meth:`init_weights` (the
            Runner calls it when training starts). ``None``: ``init_cfg`` decides.
        decoder_channels: U-Net decoder widths, deepest first (5 for ResNet, first 4 used
            for ViT).
        vit_blocks: ViT blocks whose tokens feed the decoder (default: the last of each
            quarter, UNETR's 3 / 6 / 9 / 12 for 12 blocks).
        vit_pyramid_channels: channels of the ViT maps at strides 2, 4, 8, 16.
        dice_weight, bce_weight: loss = dice_weight * Dice + bce_weight * BCE.
        data_preprocessor: defaults to ``CxrReportDataPreprocessor`` (stacks ``img``,
            keeps ``gt_seg_map`` and ``seg_geometry`` per sample).

    Inputs: any size for ResNet (multiples of 32 avoid MONAI's padding inside the
    decoder); exactly the ViT's ``img_size`` for ViT.
    """

    def __init__(self, image_encoder: dict | nn.Module, freeze_encoder: bool = True,
                 pretrained: Optional[str] = None,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
                 vit_blocks: Optional[Sequence[int]] = None,
                 vit_pyramid_channels: Sequence[int] = (64, 128, 256, 512),
                 dice_weight: float = 1.0, bce_weight: float = 1.0,
                 data_preprocessor: Optional[dict | nn.Module] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = CxrReportDataPreprocessor()
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError("CxrSegmenter: give `pretrained` or `init_cfg`, not both")
            init_cfg = mgca_init_cfg(pretrained, image_encoder_only=True, strict=True)
        super().__init__(data_preprocessor=_build(data_preprocessor), init_cfg=init_cfg)
        self.image_encoder = _build(image_encoder)
        self.freeze_encoder = freeze_encoder
        self.is_vit = isinstance(self.image_encoder, ViTImageEncoder)
        if self.is_vit:
            depth = len(self.image_encoder.vit.blocks)
            self.vit_blocks = list(vit_blocks or [depth * q // 4 - 1 for q in (1, 2, 3, 4)])
            if len(self.vit_blocks) != 4 or not all(0 <= b < depth for b in self.vit_blocks):
                raise ValueError(f"vit_blocks must be 4 block indices in [0, {depth}), "
                                 f"got {self.vit_blocks}")
            self.pyramid = ViTFeaturePyramid(self.image_encoder.local_dims,
                                             vit_pyramid_channels)
            feature_channels = list(vit_pyramid_channels)
        elif isinstance(self.image_encoder, ResNetImageEncoder):
            feature_channels = _resnet_channels(self.image_encoder)
        else:
            raise TypeError(f"CxrSegmenter needs a ResNetImageEncoder or ViTImageEncoder, "
                            f"not {type(self.image_encoder).__name__}")
        levels = len(feature_channels)
        decoder_channels = list(decoder_channels)[:levels]
        if len(decoder_channels) != levels:
            raise ValueError(f"decoder_channels needs {levels} entries for this encoder")
        # FlexibleUNet's decoder settings; its first encoder channel (the input's) is
        # only a placeholder in MONAI's channel bookkeeping.
        self.decoder = UNetDecoder(
            spatial_dims=2, encoder_channels=[1, *feature_channels],
            decoder_channels=decoder_channels, act=("relu", {"inplace": True}),
            norm=("batch", {"eps": 1e-3, "momentum": 0.1}), dropout=0.0, bias=False,
            upsample="nontrainable", pre_conv="default", interp_mode="nearest",
            align_corners=None, is_pad=True)
        self.skip_connect = levels - 1
        self.head = SegmentationHead(spatial_dims=2, in_channels=decoder_channels[-1],
                                     out_channels=1, kernel_size=3)
        # batch=True: Dice over the whole batch, so an image with an empty mask (most
        # images for a focal finding) does not give a 0/0 term of its own.
        self.dice_loss = DiceLoss(sigmoid=True, batch=True)
        self.bce_loss = nn.BCEWithLogitsLoss()
        self.dice_weight, self.bce_weight = float(dice_weight), float(bce_weight)
        if freeze_encoder:
            self.image_encoder.requires_grad_(False)
            self.image_encoder.eval()
            if not _loads_weights(init_cfg):
                logger.warning("CxrSegmenter: the encoder is frozen and randomly initialised;"
                               " start it from MGCA (pretrained=CKPT or an init_cfg of type "
                               "'Pretrained') or pass freeze_encoder=False")

    def init_weights(self) -> None:
        """mmengine's initialisation, in the ``interlace`` scope whatever the caller's: its
        ``Pretrained`` takes key maps (a Runner sets the scope; a script may not)."""
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope("interlace"):
            super().init_weights()

    def train(self, mode: bool = True) -> "CxrSegmenter":
        """Keep a frozen encoder in eval mode: its BatchNorm statistics are part of the
        pre-trained weights and must not drift to the segmentation data."""
        super().train(mode)
        if self.freeze_encoder:
            self.image_encoder.eval()
        return self

    # -- network ------------------------------------------------------------------------

    def _features(self, images: Tensor) -> list[Tensor]:
        if self.is_vit:
            size = _vit_geometry(self.image_encoder)[0]
            if tuple(images.shape[-2:]) != size:
                raise ValueError(f"ViT encoder expects {tuple(size)} inputs (its position "
                                 f"embedding is fixed), got {tuple(images.shape[-2:])}")
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
                maps = _vit_token_maps(self.image_encoder, images, self.vit_blocks)
            return self.pyramid(maps)
        # No graph through a frozen encoder: saves the activations' memory.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            return _resnet_features(self.image_encoder, images)

    def segment(self, images: Tensor) -> Tensor:
        """Segmentation logits.

        Args:
            images: (B, C, H, W) normalised images.

        Returns:
            (B, 1, H, W) logits (sigmoid gives the foreground probability).
        """
        features = self._features(images)
        logits = self.head(self.decoder(features, self.skip_connect))
        if logits.shape[-2:] != images.shape[-2:]:  # odd sizes: MONAI pads on the way up
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear",
                                   align_corners=False)
        return logits

    def forward(self, inputs: Tensor, data_samples: Optional[list] = None,
                mode: str = "tensor") -> Any:
        """mmengine entry point.

        Args:
            inputs: (B, C, H, W) images.
            data_samples: B dicts with ``gt_seg_map`` (1, H, W) for ``'loss'``; with
                ``seg_geometry`` for original-size predictions.
            mode: ``'tensor'`` -> (B, 1, H, W) logits; ``'loss'`` -> dict(loss_dice,
                loss_bce); ``'predict'`` -> B dicts (see :meth:`predict`).
        """
        if mode == "tensor":
            return self.segment(inputs)
        if mode == "loss":
            return self.loss(inputs, data_samples or [])
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"unknown mode {mode!r}; use 'tensor', 'loss' or 'predict'")

    def loss(self, inputs: Tensor, data_samples: Sequence[Mapping[str, Any]]) -> dict:
        """Dice (MONAI, sigmoid, over the batch) and BCE on (B, 1, H, W) logits."""
        logits = self.segment(inputs)
        targets = torch.stack([torch.as_tensor(s["gt_seg_map"]) for s in data_samples])
        targets = targets.to(device=logits.device, dtype=logits.dtype)
        if targets.shape != logits.shape:
            raise ValueError(f"gt_seg_map batch {tuple(targets.shape)} does not match the "
                             f"logits {tuple(logits.shape)}")
        return dict(loss_dice=self.dice_weight * self.dice_loss(logits, targets),
                    loss_bce=self.bce_weight * self.bce_loss(logits, targets))

    def predict(self, inputs: Tensor,
                data_samples: Optional[Sequence[Mapping[str, Any]]] = None) -> list[dict]:
        """Per-image probabilities.

        Returns:
            B dicts: the sample's own fields (``gt_seg_map``, ``img_path``, ...) plus
            ``seg_prob`` (1, H, W) float32 in the network frame (what Dice is scored on)
            and, when the sample has ``seg_geometry``, ``pred_prob`` (H0, W0) float32 at
            the original image size (padding and resize undone). All on the CPU.
        """
        probs = torch.sigmoid(self.segment(inputs)).float().cpu()
        outputs = []
        for index, prob in enumerate(probs):
            sample = data_samples[index] if data_samples else {}
            if not isinstance(sample, Mapping):
                sample = sample.to_dict() if hasattr(sample, "to_dict") else {}
            out = dict(sample, seg_prob=prob)
            if sample.get("seg_geometry"):
                out["pred_prob"] = restore_original_size(prob, sample["seg_geometry"])[0]
            outputs.append(out)
        return outputs
