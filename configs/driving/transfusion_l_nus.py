# TransFusion-L (LiDAR-only), the first stage of DeepInteraction++ training
# (docs/methods/deepinteraction.md):
# voxels 0.075 x 0.075 x 0.2 m over [-54, 54] m (sparse shape 41 x 1440 x 1440), SECOND
# sparse encoder 16-32-64-128, SECOND backbone (128, 256) + FPN -> 512 x 180 x 180 BEV,
# 200 queries, one decoder layer on the BEV; GT-paste (ObjectSample) augmentation,
# AdamW + cyclic LR for 20 epochs, CBGS.
#   python tools/train.py configs/driving/transfusion_l_nus.py
_base_ = ["./_base_/nuscenes_fusion.py"]

voxel_size = [0.075, 0.075, 0.2]
point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]

model = dict(
    type="LidarOnlyDetector",
    data_preprocessor=dict(
        type="DrivingDataPreprocessor", use_images=False,
        voxel_layer=dict(max_num_points=10, point_cloud_range=point_cloud_range,
                         voxel_size=voxel_size, max_voxels=(120000, 160000))),
    lidar_encoder=dict(
        type="LidarBEVEncoder",
        voxel_encoder=dict(type="MeanVoxelEncoder", num_features=5),
        middle_encoder=dict(type="SparseEncoderSECOND", in_channels=5,
                            sparse_shape=[41, 1440, 1440], output_channels=128),
        backbone=dict(type="SECONDBackbone", in_channels=256, out_channels=[128, 256],
                      layer_nums=[5, 5], layer_strides=[1, 2]),
        neck=dict(type="SECONDFPN", in_channels=[128, 256], out_channels=[256, 256],
                  upsample_strides=[1, 2])),
    bbox_head=dict(
        type="InteractionDetectionHead", num_classes=10, embed_dims=128, num_queries=200,
        layer_streams=("a",),
        bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size[:2],
                        out_size_factor=8,
                        post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0]),
        # Hungarian costs: classification 0.15, BEV L1 0.25, IoU 0.25
        # (docs/methods/deepinteraction.md).
        assigner=dict(cls_weight=0.15, reg_weight=0.25, iou_weight=0.25),
        decoder=dict(num_heads=8, ffn_dims=256, look_forward_twice=False)),
)

db_sampler = dict(
    info_path="nuscenes_dbinfos_train.pkl", data_root="data/nuscenes", rate=1.0,
    prepare=dict(filter_by_min_points=dict(
        car=5, truck=5, bus=5, trailer=5, construction_vehicle=5, traffic_cone=5, barrier=5,
        motorcycle=5, bicycle=5, pedestrian=5)),
    sample_groups=dict(car=2, truck=3, construction_vehicle=7, bus=4, trailer=6, barrier=2,
                       motorcycle=6, bicycle=6, pedestrian=2, traffic_cone=2),
    classes=class_names, points_loader=dict(type="LoadPointsFromFile", load_dim=5, use_dim=5))
train_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=10, load_dim=5, use_dim=5),
    dict(type="LoadAnnotations3D"),
    dict(type="ObjectSample", db_sampler=db_sampler),
    dict(type="GlobalRotScaleTrans", rot_range=(-0.785, 0.785), scale_ratio_range=(0.9, 1.1),
         translation_std=(0.5, 0.5, 0.5)),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectNameFilter", classes=class_names),
    dict(type="PointShuffle"),
    dict(type="Pack3DDetInputs", keys=("points", "gt_bboxes_3d", "gt_labels_3d")),
]
test_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=10, load_dim=5, use_dim=5, test_mode=True),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="Pack3DDetInputs", keys=("points",)),
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(modality=dict(use_lidar=True, use_camera=False))
test_evaluator = val_evaluator
