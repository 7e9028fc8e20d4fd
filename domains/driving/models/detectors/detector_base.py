"""What the driving detectors share: the mmengine ``BaseModel`` contract
(``forward(inputs, data_samples, mode)``), the LiDAR stream, the detection head, modality
dropping, ground truth in and predictions out.

A subclass says only how the head's inputs are made (:meth:`DrivingDetectorBase.head_inputs`).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from torch import Tensor, nn

from interlace.core.engine.registry import MODELS

from .modality_dropping import (check_drop_modalities, drop_camera_views,
                                drop_modalities_from_inputs)

__all__ = ["DrivingDetectorBase", "build_component"]

ModuleOrConfig = Union[nn.Module, dict]


def build_component(component: Optional[ModuleOrConfig]) -> Optional[nn.Module]:
    """A module from its config (``MODELS``), or the module itself; None stays None."""
    if component is None or isinstance(component, nn.Module):
        return component
    return MODELS.build(component)


class DrivingDetectorBase(BaseModel):
    """LiDAR stream + detection head + the BaseModel plumbing.

    Args:
        lidar_encoder: :class:`LidarBEVEncoder` or its config.
        bbox_head: :class:`InteractionDetectionHead` or its config.
        data_preprocessor: default ``dict(type='DrivingDataPreprocessor')``.
        drop_modalities: ``'lidar'`` and / or ``'camera'`` treated as absent in every
            forward (see :mod:`.modality_dropping`).
        drop_views: K camera views per sample (int) or these view indices marked missing.
        drop_views_seed: seed of the random view choice.
        init_cfg: mmengine init config.
    """

    def __init__(self, lidar_encoder: ModuleOrConfig, bbox_head: ModuleOrConfig,
                 data_preprocessor: Optional[ModuleOrConfig] = None,
                 drop_modalities: Sequence[str] = (),
                 drop_views: Union[int, Sequence[int]] = 0, drop_views_seed: int = 0,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type="DrivingDataPreprocessor")
        super().__init__(data_preprocessor=build_component(data_preprocessor), init_cfg=init_cfg)
        self.lidar_encoder = build_component(lidar_encoder)
        self.bbox_head = build_component(bbox_head)
        self.drop_modalities = check_drop_modalities(drop_modalities)
        self.drop_views = drop_views if isinstance(drop_views, int) else tuple(drop_views)
        self.drop_views_seed = int(drop_views_seed)

    # --- inputs ------------------------------------------------------------------------
    def apply_drops(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The preprocessor's inputs with ``drop_modalities`` / ``drop_views`` applied
        (``view_missing`` updated in ``batch_geometry``)."""
        names = check_drop_modalities(self.drop_modalities)  # attribute may be set later
        inputs = drop_modalities_from_inputs(inputs, names)
        geometry = inputs["batch_geometry"]
        drop = self.drop_views
        if geometry.get("view_missing") is not None and drop not in (0, ()):
            geometry = dict(geometry)
            geometry["view_missing"] = drop_camera_views(geometry["view_missing"], drop,
                                                         self.drop_views_seed)
            inputs = dict(inputs, batch_geometry=geometry)
        return inputs

    def extract_bev(self, inputs: dict[str, Any]) -> Tensor:
        """(B, C_l, H, W) LiDAR BEV map of the (dropped) inputs."""
        return self.lidar_encoder(inputs["voxels"], len(inputs["points"]))

    def head_inputs(self, inputs: dict[str, Any],
                    data_samples: Optional[Sequence[Any]]) -> dict[str, Any]:
        """Arguments of the head's forward (``a``, ``b``, ``correspondence``,
        ``lidar_only_bev``) for the (already dropped) inputs."""
        raise NotImplementedError

    # --- BaseModel ---------------------------------------------------------------------
    def forward(self, inputs: dict[str, Any], data_samples: Optional[Sequence[Any]] = None,
                mode: str = "tensor") -> Any:
        """Run the detector.

        Args:
            inputs: :class:`DrivingDataPreprocessor` output: ``points`` B x (P_b, 5),
                ``voxels`` {voxels (M, P, 5), num_points (M,), coors (M, 4)}, ``imgs``
                (B, V, 3, H, W) or None, ``batch_geometry`` (lidar2img (B, V, 4, 4), ...).
            data_samples: B data samples; ``gt_instances_3d`` (bboxes_3d (N, 9) geometric
                centre, labels_3d (N,)) for ``'loss'``.
            mode: ``'loss'`` -> dict of losses (``layer{l}_loss_cls``, ``layer{l}_loss_bbox``,
                ``loss_heatmap``[, ``loss_heatmap_lidar_only``]) and ``matched_ious``;
                ``'predict'`` -> the data samples with ``pred_instances_3d`` (InstanceData
                bboxes_3d (N, 9) geometric centre, LiDAR frame; scores_3d (N,); labels_3d
                (N,)); ``'tensor'`` -> dict of the head's raw outputs: ``dense_heatmaps``
                {name: (B, K, H, W) logits} and ``predictions`` (the last decoder layer's
                {center (B, Q, 2), height, size, rot, vel, heatmap (B, Q, K), position}).
        """
        inputs = self.apply_drops(inputs)
        head_args = self.head_inputs(inputs, data_samples)
        if mode == "loss":
            if data_samples is None:
                raise ValueError("mode='loss' needs data_samples with gt_instances_3d")
            boxes, labels = self._ground_truth(data_samples, head_args["a"])
            return self.bbox_head.loss(**head_args, gt_bboxes_3d=boxes, gt_labels_3d=labels)
        if mode == "predict":
            if data_samples is None:
                raise ValueError("mode='predict' needs the data samples to fill")
            return self._pack(self.bbox_head.predict(**head_args), data_samples)
        if mode == "tensor":
            output = self.bbox_head(**head_args)
            return dict(dense_heatmaps=output.dense_heatmaps,
                        predictions=output.decoder.layers[-1])
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    @staticmethod
    def _ground_truth(data_samples: Sequence[Any], like: Any) -> tuple[list[Tensor], list[Tensor]]:
        levels = getattr(like, "levels", None)
        device = (levels[0] if levels is not None else like).device
        boxes, labels = [], []
        for index, sample in enumerate(data_samples):
            gt = getattr(sample, "gt_instances_3d", None)
            if gt is None:
                raise KeyError(f"data sample {index} has no gt_instances_3d (training "
                               "pipelines must pack gt_bboxes_3d and gt_labels_3d)")
            boxes.append(torch.as_tensor(gt.bboxes_3d, device=device, dtype=torch.float32))
            labels.append(torch.as_tensor(gt.labels_3d, device=device).long())
        return boxes, labels

    @staticmethod
    def _pack(results: Sequence[dict[str, Tensor]], data_samples: Sequence[Any]) -> list[Any]:
        if len(results) != len(data_samples):
            raise ValueError(f"{len(results)} predictions for {len(data_samples)} data samples")
        for result, sample in zip(results, data_samples):
            sample.pred_instances_3d = InstanceData(bboxes_3d=result["bboxes_3d"],
                                                    scores_3d=result["scores_3d"],
                                                    labels_3d=result["labels_3d"])
        return list(data_samples)
