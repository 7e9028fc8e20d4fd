"""Driving data transforms, registered in ``TRANSFORMS`` under scope ``interlace``.

A training pipeline in a config (mmdet3d-like names and arguments)::

    train_pipeline = [
        dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
        dict(type='LoadPointsFromMultiSweeps', sweeps_num=10, load_dim=5, use_dim=5),
        dict(type='LoadMultiViewImages'),
        dict(type='LoadAnnotations3D'),
        dict(type='ObjectSample', db_sampler=db_sampler),         # optional GT-paste
        dict(type='ImageResizeCrop', final_dim=(256, 704), resize_lim=(0.38, 0.55),
             bot_pct_lim=(0.0, 0.0), is_train=True),
        dict(type='GlobalRotScaleTrans', rot_range=(-0.785, 0.785),
             scale_ratio_range=(0.9, 1.1), translation_std=(0.5, 0.5, 0.5)),
        dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
        dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
        dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
        dict(type='ObjectNameFilter', classes=CLASSES),
        dict(type='ImageNormalize'),
        dict(type='PointShuffle'),
        dict(type='Pack3DDetInputs'),
    ]

Matrices the model consumes: ``lidar2img`` (V, 4, 4) original points -> original pixels
(never changed by augmentation), ``img_aug_matrix`` (V, 4, 4) original pixels ->
network-input pixels, ``lidar_aug_matrix`` (4, 4) original points -> current points.
"""
from .augmentation import GlobalRotScaleTrans, RandomFlip3D, apply_lidar_transform
from .box_transforms import limit_yaw, transform_boxes, transform_points, undo_lidar_augmentation
from .filters import (ObjectNameFilter, ObjectRangeFilter, PointShuffle, PointsRangeFilter,
                      select_objects)
from .formatting import DEFAULT_META_KEYS, Pack3DDetInputs
from .image_loading import LoadMultiViewImages
from .image_transforms import ImageNormalize, ImageResizeCrop
from .loading import (LoadAnnotations3D, LoadPointsFromFile, LoadPointsFromMultiSweeps,
                      read_points_file)
from .time_lag import ReverseTimeLag, reverse_time_lag
# Last, as a module: gt_paste imports the loaders above, and this form also works when
# gt_paste is the module imported first. Importing it registers ObjectSample.
from .. import gt_paste  # noqa: F401

__all__ = [
    "LoadPointsFromFile", "LoadPointsFromMultiSweeps", "LoadAnnotations3D",
    "LoadMultiViewImages", "GlobalRotScaleTrans", "RandomFlip3D", "ImageResizeCrop",
    "ImageNormalize", "PointsRangeFilter", "ObjectRangeFilter", "ObjectNameFilter",
    "PointShuffle", "Pack3DDetInputs", "transform_boxes", "transform_points",
    "undo_lidar_augmentation", "limit_yaw", "apply_lidar_transform", "select_objects",
    "read_points_file", "DEFAULT_META_KEYS", "ReverseTimeLag", "reverse_time_lag",
]
