"""SkySense pre-training: multi-granularity contrastive learning with an EMA teacher.

Sec. 3.2 of the paper. A student and a teacher (EMA of the student, see
:mod:`.ema_teacher` and :class:`EMATeacherHook`) encode two views of each chip (other
dates, shifted crops; :mod:`.contrastive_views`). For every *branch* — each stream's
own features (mean over the view's valid dates), the high-res stream if any, and the
fused feature — the student's projected embeddings are contrasted with the teacher's:

* pixel level: per grid cell of the views' overlap, InfoNCE over the sample's cells, or
  (with ``distillation``) DINO-style self-distillation over prototypes
  (:class:`PrototypeDistillationLoss`; SkySense's teacher-student form);
* object level: Sinkhorn-Knopp clusters of the cells, pooled and contrasted
  (:class:`ObjectContrastiveLoss`);
* image level: the pooled embedding, InfoNCE across the global batch
  (:class:`~interlace.core.alignment.InstanceContrastiveLoss`, gathers over ranks), or the
  same self-distillation with ``distillation``;

plus a cross-modal term: pixel-level InfoNCE between the student's embeddings of two
streams (SAR and optical) at the same cell. Each term is logged as ``loss_<term>_<branch>``
(``loss_cross_modal_<a>_<b>``) and weighted by ``loss_weights``. If a
:class:`GeoContextPrototypes` is configured, it is updated from the teacher's fused
features each step (Sec. 3.3).
"""
from __future__ import annotations

import itertools
from typing import Any, Optional, Sequence

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS
from interlace.core.temporal import TemporalEncoderOutput

from .contrastive_views import ContrastiveViewSampler
from .data_preprocessor import TimeSeriesDataPreprocessor
from .ema_teacher import ema_update_, make_teacher
from .multi_granularity_losses import ObjectContrastiveLoss, dense_info_nce
from .prototype_distillation import PrototypeDistillationLoss

__all__ = ["SkySensePretrainer", "encoder_arguments"]

_TERMS = ("pixel", "object", "image", "cross_modal")
_ENCODER_KEYS = ("series", "day_of_year", "valid", "present", "high_res", "high_res_present")


def _build(module: dict | nn.Module) -> nn.Module:
    return MODELS.build(module) if isinstance(module, dict) else module


def encoder_arguments(inputs: dict[str, Any]) -> dict[str, Any]:
    """The encoder's keyword arguments from the preprocessor's input dict."""
    return {k: inputs[k] for k in _ENCODER_KEYS if k in inputs}


def branch_maps(out: TemporalEncoderOutput) -> dict[str, tuple[Tensor, Tensor]]:
    """branch -> ((B, D, h, w) map, (B, h, w) bool validity) of an encoder output.

    A stream's map is the mean of its valid dates at each cell (the two views see other
    dates, so only a date-free summary of a stream corresponds between them).
    """
    maps: dict[str, tuple[Tensor, Tensor]] = {}
    for name, features in out.stream_features.items():
        weights = out.stream_valid[name].to(features.dtype).unsqueeze(2)  # (B, T, 1, h, w)
        mean = (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        maps[name] = (mean, out.stream_valid[name].any(dim=1))
    if out.high_res_features is not None:
        grid = out.fused.shape[-2:]
        maps["high_res"] = (out.high_res_features,
                            out.high_res_valid.view(-1, 1, 1).expand(-1, *grid))
    union = torch.zeros_like(out.fused[:, 0], dtype=torch.bool)
    for _, valid in maps.values():
        union = union | valid
    maps["fused"] = (out.fused, union)
    return maps


def _positions(features: Tensor) -> Tensor:
    """(B, D, h, w) -> (B, h, w, D)."""
    return features.permute(0, 2, 3, 1)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """(B, h, w, P), (B, h, w) -> (B, P) mean over the valid cells (0 where none)."""
    weights = valid.to(values.dtype).unsqueeze(-1)
    return (values * weights).flatten(1, 2).sum(1) / weights.flatten(1, 2).sum(1).clamp_min(1.0)


@MODELS.register_module()
class SkySensePretrainer(BaseModel):
    """Teacher-student multi-granularity contrastive pre-training of the encoder.

    Args:
        encoder: :class:`~interlace.core.temporal.FactorizedSpatioTemporalEncoder` config.
        projection_dims: P, the contrastive embedding size.
        hidden_dims: projector MLP hidden size (default 2 * embed_dims).
        crop_size: view crop side in input pixels (a multiple of the grid cell).
        min_overlap: minimum overlap of the two views, in grid cells.
        num_view_dates: dates kept per stream in each view (None = all).
        temperature: pixel / cross-modal InfoNCE temperature.
        object_loss: :class:`ObjectContrastiveLoss` settings (``embed_dims`` is set).
        image_loss: image-level loss config (default ``InstanceContrastiveLoss``, T = 0.2).
        distillation: :class:`PrototypeDistillationLoss` settings (``embed_dims`` is set):
            if given, the pixel and image levels are self-distillation over prototypes
            (one loss per branch and level) instead of InfoNCE.
        loss_weights: ``dict(pixel=, object=, image=, cross_modal=)``, missing = 1, 0 skips.
        geo_prototypes: optional :class:`GeoContextPrototypes` config (``embed_dims`` set).
        view_seed: seed of the view sampler (None = global RNG).
        data_preprocessor: defaults to :class:`TimeSeriesDataPreprocessor`.
    """

    def __init__(self, encoder: dict | nn.Module, projection_dims: int = 32,
                 hidden_dims: Optional[int] = None, crop_size: int = 24, min_overlap: int = 2,
                 num_view_dates: Optional[int] = None, temperature: float = 0.1,
                 object_loss: Optional[dict] = None, image_loss: Optional[dict] = None,
                 loss_weights: Optional[dict[str, float]] = None,
                 distillation: Optional[dict] = None,
                 geo_prototypes: Optional[dict] = None, view_seed: Optional[int] = None,
                 data_preprocessor: Optional[dict | nn.Module] = None,
                 init_cfg: Optional[dict] = None) -> None:
        preprocessor = _build(data_preprocessor or TimeSeriesDataPreprocessor())
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        unknown = set(loss_weights or {}) - set(_TERMS)
        if unknown:
            raise KeyError(f"unknown loss weights {sorted(unknown)}; use {list(_TERMS)}")
        self.loss_weights = {k: float((loss_weights or {}).get(k, 1.0)) for k in _TERMS}
        self.temperature = temperature
        self.encoder = _build(encoder)
        dims = self.encoder.embed_dims
        hidden = hidden_dims or 2 * dims
        self.stream_names = list(self.encoder.stream_names)
        branches = list(self.stream_names)
        if self.encoder.high_res_backbone is not None:
            branches.append("high_res")
        branches.append("fused")
        self.projectors = nn.ModuleDict({
            b: nn.Sequential(nn.Linear(dims, hidden), nn.GELU(), nn.Linear(hidden, projection_dims))
            for b in branches})
        self.object_losses = None
        if self.loss_weights["object"]:
            cfg = dict(object_loss or {})
            cfg.pop("type", None)
            self.object_losses = nn.ModuleDict({
                b: ObjectContrastiveLoss(projection_dims, **cfg) for b in branches})
        self.image_loss = (MODELS.build(image_loss or dict(type="InstanceContrastiveLoss",
                                                           temperature=0.2))
                           if self.loss_weights["image"] and distillation is None else None)
        self.distillation = None
        if distillation is not None:
            cfg = dict(distillation)
            cfg.pop("type", None)
            self.distillation = nn.ModuleDict({
                f"{level}_{b}": PrototypeDistillationLoss(projection_dims, **cfg)
                for level in ("pixel", "image") if self.loss_weights[level] for b in branches})
        self.geo_prototypes = None
        if geo_prototypes is not None:
            self.geo_prototypes = MODELS.build(dict(geo_prototypes, embed_dims=dims))
            # Pre-training only fills the bank (EMA, no gradient); the attention that reads
            # it is trained downstream. Frozen here so DDP finds no unused trainable weight.
            self.geo_prototypes.requires_grad_(False)
        self.teacher_encoder = make_teacher(self.encoder)
        self.teacher_projectors = make_teacher(self.projectors)
        if self.encoder.grid_size is not None:
            # A fixed grid stretches over any crop, so cells of two crops would not match.
            raise ValueError("SkySensePretrainer needs an encoder grid tied to pixels: set "
                             "grid_stride (or neither) instead of grid_size")
        cell = self.encoder.grid_stride or self.encoder.backbones[self.stream_names[0]].stride
        self.view_sampler = ContrastiveViewSampler(crop_size, cell, min_overlap, num_view_dates,
                                                   view_seed)

    def init_weights(self) -> None:
        """Initialise the student, then start the teacher as an exact copy of it."""
        super().init_weights()
        self.update_teacher(0.0)

    def update_teacher(self, momentum: float) -> None:
        """``teacher = m * teacher + (1 - m) * student`` for encoder and projectors."""
        ema_update_(self.teacher_encoder, self.encoder, momentum)
        ema_update_(self.teacher_projectors, self.projectors, momentum)

    def train(self, mode: bool = True) -> "SkySensePretrainer":
        super().train(mode)
        # The teacher always runs in inference mode (no dropout on the targets).
        self.teacher_encoder.eval()
        self.teacher_projectors.eval()
        return self

    def forward(self, inputs: dict[str, Any], data_samples: Optional[Sequence[Any]] = None,
                mode: str = "tensor") -> dict[str, Tensor]:
        """Run the model.

        Args:
            inputs: the :class:`TimeSeriesDataPreprocessor` dict.
            data_samples: unused (pre-training needs no labels).
            mode: 'loss' -> the weighted loss terms; 'tensor' / 'predict' ->
                ``dict(fused=(B, D, h, w))``, the student's fused map of the whole chip.
        """
        if mode == "loss":
            return self.loss(inputs)
        if mode not in ("tensor", "predict"):
            raise ValueError(f"unknown mode {mode!r}; use 'loss', 'tensor' or 'predict'")
        return dict(fused=self.encoder(**encoder_arguments(inputs)).fused)

    def loss(self, inputs: dict[str, Any]) -> dict[str, Tensor]:
        """The weighted contrastive terms on a freshly drawn pair of views."""
        views = self.view_sampler(inputs)
        student = branch_maps(self.encoder(**encoder_arguments(views.student)))
        with torch.no_grad():
            teacher_out = self.teacher_encoder(**encoder_arguments(views.teacher))
            teacher = branch_maps(teacher_out)
        (s_top, s_left), (t_top, t_left) = views.student_overlap, views.teacher_overlap
        height, width = views.overlap_size
        w = self.loss_weights
        losses: dict[str, Tensor] = {}
        embeddings: dict[str, tuple[Tensor, Tensor]] = {}
        for branch, (s_map, s_valid) in student.items():
            t_map, t_valid = teacher[branch]
            s_emb = self.projectors[branch](_positions(s_map))  # (B, h, w, P)
            with torch.no_grad():
                t_emb = self.teacher_projectors[branch](_positions(t_map))
            embeddings[branch] = (s_emb, s_valid)
            s_ov = s_emb[:, s_top:s_top + height, s_left:s_left + width].flatten(1, 2)
            t_ov = t_emb[:, t_top:t_top + height, t_left:t_left + width].flatten(1, 2)
            valid = (s_valid[:, s_top:s_top + height, s_left:s_left + width]
                     & t_valid[:, t_top:t_top + height, t_left:t_left + width]).flatten(1)
            if w["pixel"] and self.distillation is not None:
                losses[f"loss_pixel_{branch}"] = w["pixel"] * self.distillation[
                    f"pixel_{branch}"](s_ov, t_ov, valid)
            elif w["pixel"]:
                losses[f"loss_pixel_{branch}"] = w["pixel"] * dense_info_nce(
                    s_ov, t_ov, valid, self.temperature)
            if self.object_losses is not None:
                losses[f"loss_object_{branch}"] = w["object"] * self.object_losses[branch](
                    s_ov, t_ov, valid)
            if w["image"] and self.distillation is not None:
                losses[f"loss_image_{branch}"] = w["image"] * self.distillation[
                    f"image_{branch}"](_masked_mean(s_emb, s_valid), _masked_mean(t_emb, t_valid))
            elif self.image_loss is not None:
                losses[f"loss_image_{branch}"] = w["image"] * self.image_loss(
                    _masked_mean(s_emb, s_valid), _masked_mean(t_emb, t_valid))
        if w["cross_modal"]:
            present = [n for n in self.stream_names if n in embeddings]
            for a, b in itertools.combinations(present, 2):
                (emb_a, valid_a), (emb_b, valid_b) = embeddings[a], embeddings[b]
                both = (valid_a & valid_b).flatten(1)
                flat_a, flat_b = emb_a.flatten(1, 2), emb_b.flatten(1, 2)
                term = 0.5 * (dense_info_nce(flat_a, flat_b, both, self.temperature)
                              + dense_info_nce(flat_b, flat_a, both, self.temperature))
                losses[f"loss_cross_modal_{a}_{b}"] = w["cross_modal"] * term
        latlon = inputs.get("latlon")
        if self.geo_prototypes is not None and latlon is not None:
            self.geo_prototypes.update(teacher_out.fused, latlon, teacher["fused"][1])
        return losses
