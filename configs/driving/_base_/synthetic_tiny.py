# The generated nuScenes-layout database at CPU size: +-51.2 m (the generator places objects
# up to their nuScenes evaluation range, 50 m for vehicles, so a smaller range loses boxes that
# mAP counts), 3 sweeps, 6 cameras resized from 225 x 400 to 96 x 160. Make it with
#   python tools/misc/make_synthetic.py driving --out data/nuscenes_synthetic --scenes 4 --samples-per-scene 10
#   python tools/create_data.py nuscenes --root data/nuscenes_synthetic --version v1.0-mini \
#       --out data/nuscenes_synthetic --max-sweeps 3
_base_ = ["../../_base_/default_runtime.py"]

data_root = "data/nuscenes_synthetic"
version = "v1.0-mini"
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
voxel_size = [0.4, 0.4, 0.2]
class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]
image_size = (96, 160)
sweeps_num = 3

train_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=sweeps_num, load_dim=5, use_dim=5),
    dict(type="LoadMultiViewImages"),
    dict(type="LoadAnnotations3D"),
    dict(type="ImageResizeCrop", final_dim=image_size, resize_lim=(0.42, 0.46),
         bot_pct_lim=(0.0, 0.0), is_train=True),
    dict(type="GlobalRotScaleTrans", rot_range=(-0.3, 0.3), scale_ratio_range=(0.95, 1.05),
         translation_std=(0.2, 0.2, 0.2)),
    dict(type="RandomFlip3D", flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ObjectNameFilter", classes=class_names),
    dict(type="ImageNormalize"),
    dict(type="PointShuffle"),
    dict(type="Pack3DDetInputs"),
]
test_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=sweeps_num, load_dim=5, use_dim=5,
         test_mode=True),
    dict(type="LoadMultiViewImages"),
    dict(type="ImageResizeCrop", final_dim=image_size, resize_lim=(0.44, 0.44),
         bot_pct_lim=(0.0, 0.0), is_train=False),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ImageNormalize"),
    dict(type="Pack3DDetInputs", keys=("points", "img")),
]

_dataset = dict(type="NuScenesDataset", data_root=data_root, version=version,
                metainfo=dict(classes=class_names))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(type="CBGSDataset",
                 dataset=dict(_dataset, ann_file="nuscenes_infos_train.pkl",
                              pipeline=train_pipeline, test_mode=False)))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(_dataset, ann_file="nuscenes_infos_val.pkl", pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type="NuScenesMetric", data_root=data_root,
                     ann_file="nuscenes_infos_val.pkl")
test_evaluator = val_evaluator

lr = 2e-3
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=lr, betas=(0.95, 0.99), weight_decay=0.01),
                     clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [dict(type="CosineAnnealingLR", T_max=4, eta_min=lr * 0.01, begin=0, end=4,
                        by_epoch=True, convert_to_iter_based=True)]
# Resumes mid-epoch to the same weights (core/engine/loops.py); checkpoint by iteration
# (default_hooks.checkpoint.by_epoch=False) to stop and resume inside an epoch.
train_cfg = dict(type="ResumableEpochBasedTrainLoop", max_epochs=4, val_interval=4)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

# The CPU-size LiDAR stream of the *_synthetic_tiny configs: 0.4 x 0.4 x 0.2 m voxels over
# +-51.2 m (sparse shape 41 x 256 x 256), sparse stages strided 2-2-1-1 (stride 4 instead of
# the paper's 8) -> a 64-channel 64 x 64 BEV of 1.6 m cells (the paper's cells are 0.6 m;
# 3.2 m cells put a cyclist, a pedestrian and a cone in one cell), a quarter of the
# paper's channels and 2 instead of 5 layers per backbone stage.
bev_stride = 4
voxel_layer = dict(max_num_points=10, point_cloud_range=point_cloud_range,
                   voxel_size=voxel_size, max_voxels=(40000, 40000))
lidar_encoder = dict(
    type="LidarBEVEncoder",
    voxel_encoder=dict(type="MeanVoxelEncoder", num_features=5),
    middle_encoder=dict(type="SparseEncoderSECOND", in_channels=5, sparse_shape=[41, 256, 256],
                        base_channels=8, output_channels=16,
                        encoder_channels=((8, 8, 16), (16, 16, 32), (32, 32, 32), (32, 32)),
                        encoder_strides=(2, 2, 1, 1)),
    backbone=dict(type="SECONDBackbone", in_channels=80, out_channels=[32, 64],
                  layer_nums=[2, 2], layer_strides=[1, 2]),
    neck=dict(type="SECONDFPN", in_channels=[32, 64], out_channels=[32, 32],
              upsample_strides=[1, 2]))
bbox_coder = dict(pc_range=point_cloud_range, voxel_size=voxel_size[:2],
                  out_size_factor=bev_stride,
                  post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0])
