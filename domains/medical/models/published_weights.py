"""The released MGCA checkpoints (Wang et al., NeurIPS 2022) into Interlace's MGCA, and their
image encoder alone into the linear probe and the segmentation model.

MGCA releases PyTorch Lightning ``.ckpt`` files: ``{'state_dict': {...}, 'epoch',
'global_step', 'hyper_parameters', 'optimizer_states', ...}``. Their ``state_dict`` is laid
out as its ``MGCA`` LightningModule names its parts; :data:`MGCA_CHECKPOINT` maps each part
(data, read top to bottom; the backbone maps are those of
:mod:`interlace.core.engine.weight_conversion`, ``docs/weights.md`` has the tables):

=====================================  =============================  =====================
MGCA (Lightning state_dict)            Interlace ``MGCA``             key map
=====================================  =============================  =====================
img_encoder_q.model.*                  image_encoder.*                torchvision_resnet
                                                                      (ResNet-50, fc is an
                                                                      Identity) or timm_vit
                                                                      (ViT-B/16), detected
img_encoder_q.global_embed.head.k.*    image_global_proj.layers.k.*   same layers (Linear,
                                                                      BN, ReLU, Linear, BN)
img_encoder_q.local_embed.head.k.*     image_local_proj.layers.k.*    Conv1d (O, I, 1) ->
                                                                      Linear (O, I)
text_encoder_q.model.*                 text_encoder.model.*           mgca_bert: BLIP's
                                                                      BertModel with 6
                                                                      layers of Bio_Clinical-
                                                                      BERT; its unused
                                                                      crossattention.* and
                                                                      position_ids dropped,
                                                                      a zero token-type
                                                                      embedding added
text_encoder_q.global_embed.head.k.*   report_global_proj.layers.k.*  as the image's
text_encoder_q.local_embed.head.k.*    word_local_proj.layers.k.*     Conv1d -> Linear
prototype_layer.weight (500, 128)      prototype_loss.prototypes.weight
patch_local_atten_layer.*,             (none: Interlace's token       reported unexpected
word_local_atten_layer.*               alignment has no parameters)
=====================================  =============================  =====================

MGCA feeds RGB images (a grey X-ray repeated); an encoder built with ``in_channels=1``
gets the first convolution summed over the three input channels. The text encoder's
tokenizer is not in the checkpoint: point ``text_encoder.model_path`` at the
Bio_ClinicalBERT folder MGCA was trained from (its vocabulary and config).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

from torch import Tensor, nn

from interlace.core.engine.checkpoint import PathLike
from interlace.core.engine.pretrained_init import register_state_converter
from interlace.core.engine.weight_conversion import (CHECKPOINT_MAPS, CheckpointMap, KeyMap,
                                                     WeightLoadReport, load_published_weights,
                                                     published_layout_converter,
                                                     read_state_dict, register_published_layout)

__all__ = ["MGCA_CHECKPOINT", "IMAGE_ENCODER_PART", "is_mgca_checkpoint", "load_mgca_weights",
           "mgca_init_cfg", "start_from_mgca"]


def _conv1d_to_linear(value: Tensor) -> Tensor:
    """A kernel-1 Conv1d weight (O, I, 1) as a Linear weight (O, I)."""
    return value.squeeze(-1) if value.dim() == 3 and value.shape[-1] == 1 else value


GLOBAL_EMBED = KeyMap("mgca_global_embed", "MGCA's GlobalEmbedding -> ProjectionHead",
                      rules=((r"^head\.", "layers."),))
LOCAL_EMBED = KeyMap("mgca_local_embed", "MGCA's LocalEmbedding (kernel-1 Conv1d) -> "
                     "ProjectionHead (Linear)", rules=((r"^head\.", "layers."),),
                     value_rules=((r"^head\.[03]\.weight$", _conv1d_to_linear),))
def _zero_token_type_embeddings(state: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
    """BLIP's text BERT (MGCA's) adds no token-type embedding; Hugging Face's BertModel
    adds row 0 of ``token_type_embeddings``: zeros (2 types, as MGCA's config) make the two
    compute the same."""
    out = OrderedDict(state)
    words = state.get("embeddings.word_embeddings.weight")
    if words is not None and "embeddings.token_type_embeddings.weight" not in state:
        out["embeddings.token_type_embeddings.weight"] = words.new_zeros(2, words.shape[1])
    return out


MGCA_BERT = KeyMap("mgca_bert", "MGCA's text model: BLIP's BertModel (med.py) holding the "
                   "first 6 layers of Bio_ClinicalBERT",
                   rules=((r"^", "model."),),
                   drop=(r"position_ids$", r"\.crossattention\.", r"^pooler\."),
                   prepare=_zero_token_type_embeddings)
PROTOTYPES = KeyMap("mgca_prototypes", "MGCA's prototype layer",
                    rules=((r"^weight$", "prototypes.weight"),))
IMAGE_ENCODER_PART = "img_encoder_q.model."

MGCA_CHECKPOINT = CheckpointMap(
    "mgca_lightning", "the released MGCA .ckpt files (ResNet-50 or ViT-B/16 + Bio_ClinicalBERT)",
    parts=(
        (IMAGE_ENCODER_PART, "image_encoder.", "auto"),
        ("img_encoder_q.global_embed.", "image_global_proj.", GLOBAL_EMBED),
        ("img_encoder_q.local_embed.", "image_local_proj.", LOCAL_EMBED),
        ("text_encoder_q.model.", "text_encoder.", MGCA_BERT),
        ("text_encoder_q.global_embed.", "report_global_proj.", GLOBAL_EMBED),
        ("text_encoder_q.local_embed.", "word_local_proj.", LOCAL_EMBED),
        ("prototype_layer.", "prototype_loss.", PROTOTYPES),
    ))
CHECKPOINT_MAPS["mgca"] = MGCA_CHECKPOINT  # tools/analysis_tools/convert_checkpoint.py --from mgca
# init_cfg=dict(type='Pretrained', checkpoint=CKPT, key_map='mgca') for MGCA itself; the
# encoder alone: key_map='torchvision_resnet' (or 'timm_vit'), prefix='img_encoder_q.model.',
# target='image_encoder'.
register_published_layout("mgca", MGCA_CHECKPOINT)
_released_whole = published_layout_converter(MGCA_CHECKPOINT)
_released_encoder = published_layout_converter(MGCA_CHECKPOINT, parts=(IMAGE_ENCODER_PART,))
_ENCODER = "image_encoder."


@register_state_converter("mgca_checkpoint")
def _any_mgca_checkpoint(source: Mapping[str, Tensor], target: Mapping[str, Tensor]
                         ) -> "OrderedDict[str, Tensor]":
    """An MGCA checkpoint of either kind into a whole MGCA model: a released ``.ckpt`` is
    renamed by :data:`MGCA_CHECKPOINT`; Interlace's own names pass through."""
    return _released_whole(source, target) if is_mgca_checkpoint(source) else OrderedDict(source)


@register_state_converter("mgca_image_encoder")
def _mgca_image_encoder(source: Mapping[str, Tensor], target: Mapping[str, Tensor]
                        ) -> "OrderedDict[str, Tensor]":
    """The image encoder alone (``target='image_encoder'``) out of an MGCA checkpoint of
    either kind: released (``img_encoder_q.model.*``) or Interlace's (``image_encoder.*``)."""
    if is_mgca_checkpoint(source):
        source = _released_encoder(source, {_ENCODER + k: v for k, v in target.items()})
    return OrderedDict((k[len(_ENCODER):], v) for k, v in source.items()
                       if k.startswith(_ENCODER))


def mgca_init_cfg(checkpoint: str, image_encoder_only: bool = False,
                  strict: bool = False) -> dict:
    """``init_cfg`` that starts a model from an MGCA checkpoint (a file or a work dir),
    released or Interlace's: the whole model, or only its ``image_encoder`` (a probe, a
    U-Net) with `image_encoder_only`."""
    if image_encoder_only:
        return dict(type="Pretrained", checkpoint=checkpoint, key_map="mgca_image_encoder",
                    target="image_encoder", strict=strict)
    return dict(type="Pretrained", checkpoint=checkpoint, key_map="mgca_checkpoint",
                strict=strict)


def is_mgca_checkpoint(state: Mapping[str, object]) -> bool:
    """Whether a state dict has the released MGCA layout (``img_encoder_q.model.*``)."""
    return any(str(k).startswith(IMAGE_ENCODER_PART) for k in state)


def load_mgca_weights(module: nn.Module, source: PathLike | Mapping[str, Tensor], *,
                      image_encoder_only: bool = False, strict: bool = False,
                      log: bool = True) -> WeightLoadReport:
    """Load a released MGCA checkpoint into `module`.

    Args:
        module: Interlace's :class:`MGCA`; with `image_encoder_only`, anything holding the
            encoder as ``image_encoder`` (MGCA for the linear probe, :class:`CxrSegmenter`)
            or the encoder itself (:class:`ResNetImageEncoder`, :class:`ViTImageEncoder`).
        source: the ``.ckpt`` file (read with ``weights_only=True``) or its contents.
        image_encoder_only: load ``img_encoder_q.model.*`` only (the report's keys are
            then the encoder's own, e.g. ``resnet.conv1.weight``).
        strict: raise before copying unless every key of the receiver (below the encoder
            with `image_encoder_only`) got a value and every converted key was used.

    Returns:
        :class:`WeightLoadReport`: with the whole model, the two token-attention layers
        of MGCA (8 tensors) are unexpected, and the model's own loss buffers (e.g.
        ``instance_loss.logit_scale``) missing.
    """
    state = read_state_dict(source)
    if not is_mgca_checkpoint(state):
        what = "state dict" if isinstance(source, Mapping) else str(source)
        raise ValueError(f"{what}: not a released MGCA checkpoint (no {IMAGE_ENCODER_PART}* "
                         f"keys; first keys: {', '.join(list(state)[:3])})")
    if image_encoder_only:
        encoder = getattr(module, "image_encoder", module)
        return load_published_weights(encoder, state, source_prefix=IMAGE_ENCODER_PART,
                                      target_prefix="", strict=strict, log=log)
    return load_published_weights(module, state, MGCA_CHECKPOINT, target_prefix="",
                                  strict=strict, log=log)


def start_from_mgca(model: nn.Module, checkpoint: str, image_encoder_only: bool = False,
                    strict: bool = False):
    """Apply :func:`mgca_init_cfg` to a built `model` now, as the Runner applies a config's
    ``init_cfg`` when training starts (for tools that evaluate without training: the
    linear probe, the grounding, the checks). Returns the load report."""
    from mmengine.registry import DefaultScope

    from interlace.core.engine.registry import WEIGHT_INITIALIZERS
    with DefaultScope.overwrite_default_scope("interlace"):
        initializer = WEIGHT_INITIALIZERS.build(
            mgca_init_cfg(checkpoint, image_encoder_only, strict))
    initializer(model)
    return initializer.report
