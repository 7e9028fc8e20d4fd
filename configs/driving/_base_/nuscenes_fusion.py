# nuScenes LiDAR + 6 cameras at DeepInteraction++'s settings
# (docs/methods/deepinteraction.md): 10 sweeps of 5-value points over
# [-54, -54, -5, 54, 54, 3] m, images resized and cropped to 448 x 800, global rotation /
# scale / translation and BEV flips, CBGS class-balanced sampling, scored by
# nuscenes-devkit through NuScenesMetric.
# Optimisation: AdamW + mmdet3d's cyclic schedule (below).
# Data: python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval
_base_ = ["../../_base_/default_runtime.py"]

data_root = "data/nuscenes"
version = "v1.0-trainval"
point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]
image_size = (448, 800)
# nuScenes images are 900 x 1600: 0.48-0.56 scales keep the full width after the 800 crop.
train_image_aug = dict(type="ImageResizeCrop", final_dim=image_size, resize_lim=(0.48, 0.56),
                       bot_pct_lim=(0.0, 0.0), rand_flip=False, is_train=True)
test_image_aug = dict(type="ImageResizeCrop", final_dim=image_size, resize_lim=(0.52, 0.52),
                      bot_pct_lim=(0.0, 0.0), is_train=False)

train_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=10, load_dim=5, use_dim=5),
    dict(type="LoadMultiViewImages"),
    dict(type="LoadAnnotations3D"),
    train_image_aug,
    dict(type="GlobalRotScaleTrans", rot_range=(-0.785, 0.785), scale_ratio_range=(0.9, 1.1),
         translation_std=(0.5, 0.5, 0.5)),
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
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=10, load_dim=5, use_dim=5, test_mode=True),
    dict(type="LoadMultiViewImages"),
    test_image_aug,
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
    dict(type="ImageNormalize"),
    dict(type="Pack3DDetInputs", keys=("points", "img")),
]

_dataset = dict(type="NuScenesDataset", data_root=data_root, version=version,
                metainfo=dict(classes=class_names))
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(type="CBGSDataset",
                 dataset=dict(_dataset, ann_file="nuscenes_infos_train.pkl",
                              pipeline=train_pipeline, test_mode=False)))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(_dataset, ann_file="nuscenes_infos_val.pkl", pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type="NuScenesMetric", data_root=data_root,
                     ann_file="nuscenes_infos_val.pkl")
test_evaluator = val_evaluator

# DeepInteraction++ / TransFusion optimisation (docs/methods/deepinteraction.md): AdamW
# lr 1e-4, weight decay 0.01, gradient clipping at 0.1 (L2 norm), and the "cyclic"
# schedule of mmdet3d 1.x's cyclic-20e: mmengine CosineAnnealingLR from lr up to 10 x lr over the first 40 % of the
# iterations, then down to 1e-4 x lr; beta1 follows mmdet3d's CosineAnnealingMomentum
# settings (eta_min 0.85 / 0.95, then 1) in the opposite direction. Batch 16 as published (8 GPUs x 2); scale lr with the batch
# (auto_scale_lr) on fewer GPUs.
lr = 1e-4
max_epochs = 20
rise_epochs = 8  # 40 % of max_epochs

optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=lr, betas=(0.95, 0.99), weight_decay=0.01),
                     clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type="CosineAnnealingLR", T_max=rise_epochs, eta_min=lr * 10, begin=0,
         end=rise_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - rise_epochs, eta_min=lr * 1e-4,
         begin=rise_epochs, end=max_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type="CosineAnnealingMomentum", T_max=rise_epochs, eta_min=0.85 / 0.95, begin=0,
         end=rise_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type="CosineAnnealingMomentum", T_max=max_epochs - rise_epochs, eta_min=1, begin=rise_epochs,
         end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(type="ResumableEpochBasedTrainLoop", max_epochs=max_epochs,
                 val_interval=max_epochs)  # resumes mid-epoch (core/engine/loops.py)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
auto_scale_lr = dict(enable=False, base_batch_size=16)
