"""TransFusion-L: the LiDAR-only detector, DeepInteraction's first training stage and its
LiDAR-only ablation (Bai et al., "TransFusion", CVPR 2022, the L variant).

LiDAR stream -> BEV (B, 512, 180, 180 at paper settings) -> InteractionDetectionHead with
every decoder layer on the BEV (``layer_streams=('a',)``: TransFusion-L's single decoder
layer). Its ``lidar_encoder.*`` and ``bbox_head.*`` weights seed DeepInteraction
(``tools/model_converters/merge_checkpoints.py``).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from interlace.core.engine.registry import MODELS
from interlace.core.interaction import StreamFeatures

from .detector_base import DrivingDetectorBase, ModuleOrConfig

__all__ = ["LidarOnlyDetector"]


@MODELS.register_module()
class LidarOnlyDetector(DrivingDetectorBase):
    """LiDAR stream + detection head whose decoder layers all read the BEV.

    Args:
        lidar_encoder: :class:`LidarBEVEncoder` config.
        bbox_head: :class:`InteractionDetectionHead` config; its ``in_channels`` default to
            the LiDAR stream's ``out_channels`` and its ``layer_streams`` must be all 'a'.
        data_preprocessor: default ``dict(type='DrivingDataPreprocessor',
            use_images=False)`` (images, if the pipeline loads them, are not used).
        drop_modalities: ``'lidar'`` gives an empty BEV (and few, low boxes); ``'camera'``
            is accepted and changes nothing, so one ``--drop camera`` works for both
            detectors.
        drop_views, drop_views_seed, init_cfg: as :class:`DrivingDetectorBase`.
    """

    def __init__(self, lidar_encoder: ModuleOrConfig, bbox_head: ModuleOrConfig,
                 data_preprocessor: Optional[ModuleOrConfig] = None,
                 drop_modalities: Sequence[str] = (),
                 drop_views: Union[int, Sequence[int]] = 0, drop_views_seed: int = 0,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type="DrivingDataPreprocessor", use_images=False)
        lidar_encoder = MODELS.build(lidar_encoder) if isinstance(lidar_encoder, dict) else lidar_encoder
        if isinstance(bbox_head, dict):
            bbox_head = dict(bbox_head)
            bbox_head.setdefault("in_channels", lidar_encoder.out_channels)
            streams = tuple(bbox_head.setdefault("layer_streams", ("a",)))
            if any(s != "a" for s in streams):
                raise ValueError(f"LidarOnlyDetector: every decoder layer reads the BEV "
                                 f"(layer_streams all 'a'), got {streams}")
        super().__init__(lidar_encoder, bbox_head, data_preprocessor, drop_modalities,
                         drop_views, drop_views_seed, init_cfg)

    def head_inputs(self, inputs: dict[str, Any],
                    data_samples: Optional[Sequence[Any]]) -> dict[str, Any]:
        """``a`` = the LiDAR BEV (B, C_l, H, W) as a one-level map stream; no cameras."""
        bev = self.extract_bev(inputs)
        return dict(a=StreamFeatures(levels=[bev]), b=None, correspondence=None)
