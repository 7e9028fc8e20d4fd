# TransFusion-L at CPU size on the generated database (see _base_/synthetic_tiny.py):
# 0.4 x 0.4 x 0.2 m voxels over +-51.2 m (sparse shape 41 x 256 x 256, stride 4) -> 64 x 64
# BEV of 1.6 m cells, a quarter of the paper's channels, 64 queries (the generated samples
# hold ~15-35 objects), GT-paste from the generated database. The LiDAR-only
# stage of the driving check, tools/check.py driving (results: configs/driving/transfusion_l/README.md):
#   python tools/train.py configs/driving/transfusion_l_synthetic_tiny.py
_base_ = ["./_base_/synthetic_tiny.py"]

class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
bbox_head = dict(
    type="InteractionDetectionHead", num_classes=10, embed_dims=32, num_queries=64,
    layer_streams=("a",), heatmap_channels=32,
    bbox_coder={{_base_.bbox_coder}},
    decoder=dict(num_heads=4, ffn_dims=64, grid_size=3, dynamic_dims=8,
                 look_forward_twice=False))
model = dict(
    type="LidarOnlyDetector",
    data_preprocessor=dict(
        type="DrivingDataPreprocessor", use_images=False,
        voxel_layer={{_base_.voxel_layer}}),
    lidar_encoder={{_base_.lidar_encoder}},
    bbox_head=bbox_head,
)

db_sampler = dict(
    info_path="nuscenes_dbinfos_train.pkl", data_root="data/nuscenes_synthetic", rate=1.0,
    prepare=dict(filter_by_min_points=dict(car=5, pedestrian=5)),
    sample_groups=dict(car=2, pedestrian=2), classes=class_names,
    points_loader=dict(type="LoadPointsFromFile", load_dim=5, use_dim=5))
train_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=3, load_dim=5, use_dim=5),
    dict(type="LoadAnnotations3D"),
    dict(type="ObjectSample", db_sampler=db_sampler),
    dict(type="GlobalRotScaleTrans", rot_range=(-0.3, 0.3), scale_ratio_range=(0.95, 1.05),
         translation_std=(0.2, 0.2, 0.2)),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectNameFilter", classes=class_names),
    dict(type="PointShuffle"),
    dict(type="Pack3DDetInputs", keys=("points", "gt_bboxes_3d", "gt_labels_3d")),
]
test_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=3, load_dim=5, use_dim=5, test_mode=True),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="Pack3DDetInputs", keys=("points",)),
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(modality=dict(use_lidar=True, use_camera=False))
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=5))

# Batch inference (tools/infer.py): one input per sample token of the val infos, one
# <token>.json of submission-format boxes per sample; merge them into one submission with
# tools/analysis_tools/merge_submission.py (see docs/data/driving.md). Another database:
# --cfg-options infer_cfg.reader.data_root=DIR (info_file is relative to it).
infer_cfg = dict(
    reader=dict(type="NuScenesSampleReader", info_file="nuscenes_infos_val.pkl",
                data_root={{_base_.data_root}}, pipeline=test_pipeline,
                metainfo=dict(classes=class_names)),
    writer=dict(type="NuScenesSubmissionWriter",
                modality=dict(use_lidar=True, use_camera=False)))
