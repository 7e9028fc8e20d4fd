"""SkySense downstream models: the encoder (+ geo-context prototypes) and a task head.

:class:`SkySenseSegmentor` predicts a class per pixel at the input resolution (land
cover, change maps); :class:`SkySenseClassifier` a class per chip (scene classification).
Both can drop a modality at inference (``drop_modalities=('sar',)``): its per-sample
flags are turned off, so the fused map comes from the other streams only, exactly as for
a sample that never had that modality (SkySense++ zero-fill + flags).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .data_preprocessor import TimeSeriesDataPreprocessor
from .pretrainer import encoder_arguments

__all__ = ["SkySenseSegmentor", "SkySenseClassifier"]

HIGH_RES = "high_res"


def _build(module: dict | nn.Module) -> nn.Module:
    return MODELS.build(module) if isinstance(module, dict) else module


def _field(sample: Any, name: str) -> Any:
    """`name` of a data sample (dict or data element); a PixelData / LabelData is unwrapped."""
    value = sample[name] if isinstance(sample, dict) else getattr(sample, name, None)
    if value is None:
        raise KeyError(f"data sample has no '{name}'")
    return getattr(value, "data", value) if not isinstance(value, Tensor) else value


class _SkySenseTaskModel(BaseModel):
    """Shared part: build encoder, geo prototypes and head; encode with dropped streams."""

    def __init__(self, encoder: dict | nn.Module, head: dict | nn.Module,
                 geo_prototypes: Optional[dict | nn.Module] = None,
                 update_prototypes: bool = False,
                 drop_modalities: Sequence[str] = (), ignore_index: int = 255,
                 data_preprocessor: Optional[dict | nn.Module] = None,
                 init_cfg: Optional[dict] = None) -> None:
        preprocessor = _build(data_preprocessor or TimeSeriesDataPreprocessor())
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        self.encoder = _build(encoder)
        dims = self.encoder.embed_dims
        if isinstance(geo_prototypes, dict):
            geo_prototypes = MODELS.build(dict(geo_prototypes, embed_dims=dims))
        self.geo_prototypes = geo_prototypes
        self.update_prototypes = update_prototypes
        if isinstance(head, dict):
            head = dict(head)
            head.setdefault("in_channels", 2 * dims if geo_prototypes is not None else dims)
        self.head = _build(head)
        self.ignore_index = ignore_index
        self.drop_modalities = tuple(drop_modalities)
        self._check_modalities(self.drop_modalities)

    def _check_modalities(self, names: Sequence[str]) -> None:
        known = set(self.encoder.stream_names) | {HIGH_RES}
        unknown = set(names) - known
        if unknown:
            raise KeyError(f"cannot drop unknown modalities {sorted(unknown)}; "
                           f"known: {sorted(known)}")

    def extract_features(self, inputs: dict[str, Any],
                         drop_modalities: Optional[Sequence[str]] = None) -> Tensor:
        """The fused map (B, D, h, w), or (B, 2D, h, w) with geo-context prototypes.

        Args:
            inputs: the :class:`TimeSeriesDataPreprocessor` dict.
            drop_modalities: stream names (and/or ``'high_res'``) to treat as absent;
                None = the model's ``drop_modalities``.
        """
        dropped = self.drop_modalities if drop_modalities is None else tuple(drop_modalities)
        self._check_modalities(dropped)
        args = encoder_arguments(inputs)
        if dropped:
            present = dict(args.get("present") or {})
            for name, images in args["series"].items():
                if name in dropped:
                    present[name] = torch.zeros(images.shape[0], dtype=torch.bool,
                                                device=images.device)
            args["present"] = present
            if HIGH_RES in dropped and args.get("high_res") is not None:
                args["high_res_present"] = torch.zeros(args["high_res"].shape[0], dtype=torch.bool,
                                                       device=args["high_res"].device)
        out = self.encoder(**args)
        fused = out.fused
        if self.geo_prototypes is not None:
            latlon = inputs.get("latlon")
            if latlon is None:
                raise KeyError("geo-context prototypes need 'latlon' in the inputs")
            if self.training and self.update_prototypes:
                self.geo_prototypes.update(fused, latlon)
            fused = self.geo_prototypes(fused, latlon)
        return fused

    @staticmethod
    def _input_size(inputs: dict[str, Any]) -> tuple[int, int]:
        if inputs["series"]:
            return tuple(next(iter(inputs["series"].values())).shape[-2:])
        return tuple(inputs["high_res"].shape[-2:])


@MODELS.register_module()
class SkySenseSegmentor(_SkySenseTaskModel):
    """Encoder + optional :class:`GeoContextPrototypes` + :class:`SegmentationHead`.

    Args:
        encoder: :class:`~interlace.core.temporal.FactorizedSpatioTemporalEncoder` config.
        head: head config; ``in_channels`` defaults to the fused map's channels.
        geo_prototypes: optional config (``embed_dims`` set from the encoder).
        update_prototypes: EMA-update the prototype bank during training (else it is
            used as loaded, e.g. from pre-training).
        drop_modalities: modalities treated as absent in every forward (e.g. ``('sar',)``).
        ignore_index: label of pixels without ground truth (255).
        data_preprocessor: defaults to :class:`TimeSeriesDataPreprocessor`.
    """

    def forward(self, inputs: dict[str, Any], data_samples: Optional[Sequence[Any]] = None,
                mode: str = "tensor",
                drop_modalities: Optional[Sequence[str]] = None) -> Any:
        """Run the model.

        Args:
            inputs: the preprocessor dict; series (B, T, C, H, W) per stream.
            data_samples: B samples with ``gt_sem_seg`` (H, W) int64 (for 'loss').
            mode: 'loss' -> ``dict(loss_seg)``; 'predict' -> the data samples (new ones if
                None given) with ``pred_sem_seg`` (H, W) int64 and ``seg_probs``
                (K, H, W) float at the input resolution; 'tensor' -> logits (B, K, H, W).
            drop_modalities: override of the model's ``drop_modalities``.
        """
        logits = self.head(self.extract_features(inputs, drop_modalities), self._input_size(inputs))
        if mode == "tensor":
            return logits
        if mode == "loss":
            if data_samples is None:
                raise ValueError("mode='loss' needs data_samples with gt_sem_seg")
            labels = torch.stack([torch.as_tensor(_field(s, "gt_sem_seg")).long().reshape(
                logits.shape[-2:]) for s in data_samples]).to(logits.device)
            return dict(loss_seg=F.cross_entropy(logits, labels, ignore_index=self.ignore_index))
        if mode != "predict":
            raise ValueError(f"unknown mode {mode!r}; use 'loss', 'predict' or 'tensor'")
        probs = logits.softmax(dim=1)
        samples = list(data_samples) if data_samples is not None else [
            BaseDataElement() for _ in range(logits.shape[0])]
        for sample, prob in zip(samples, probs):
            sample.set_field(prob.argmax(dim=0), "pred_sem_seg")
            sample.set_field(prob, "seg_probs")
        return samples


@MODELS.register_module()
class SkySenseClassifier(_SkySenseTaskModel):
    """Encoder + optional :class:`GeoContextPrototypes` + :class:`SceneClassificationHead`.

    Arguments as :class:`SkySenseSegmentor` (``ignore_index`` applies to ``gt_label``).
    """

    def forward(self, inputs: dict[str, Any], data_samples: Optional[Sequence[Any]] = None,
                mode: str = "tensor",
                drop_modalities: Optional[Sequence[str]] = None) -> Any:
        """Run the model.

        Args:
            inputs: the preprocessor dict.
            data_samples: B samples with ``gt_label`` (an int) for 'loss'.
            mode: 'loss' -> ``dict(loss_cls)``; 'predict' -> data samples with
                ``pred_label`` (int64 scalar) and ``pred_score`` (K,) probabilities;
                'tensor' -> logits (B, K).
            drop_modalities: override of the model's ``drop_modalities``.
        """
        logits = self.head(self.extract_features(inputs, drop_modalities))
        if mode == "tensor":
            return logits
        if mode == "loss":
            if data_samples is None:
                raise ValueError("mode='loss' needs data_samples with gt_label")
            labels = torch.stack([torch.as_tensor(_field(s, "gt_label")).long().reshape(())
                                  for s in data_samples]).to(logits.device)
            return dict(loss_cls=F.cross_entropy(logits, labels, ignore_index=self.ignore_index))
        if mode != "predict":
            raise ValueError(f"unknown mode {mode!r}; use 'loss', 'predict' or 'tensor'")
        probs = logits.softmax(dim=1)
        samples = list(data_samples) if data_samples is not None else [
            BaseDataElement() for _ in range(logits.shape[0])]
        for sample, prob in zip(samples, probs):
            sample.set_field(prob.argmax(), "pred_label")
            sample.set_field(prob, "pred_score")
        return samples
