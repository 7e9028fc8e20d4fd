# The LiDAR-only stage of the driving check (python tools/check.py driving): the tiny
# TransFusion-L on the check's generated nuScenes-format set (30 scenes x 8 key frames,
# v1.0-trainval names, val scenes held out), 4,300 iterations of batch 2 (the length of the
# earlier time-budgeted run, in the model-zoo README; fixed so the run repeats), lr warm-up then
# cosine over the budget.
_base_ = ["../transfusion_l_synthetic_tiny.py"]

data_root = "data/checks/nuscenes_synthetic"
version = "v1.0-trainval"
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
               "motorcycle", "bicycle", "pedestrian", "traffic_cone"]
db_sampler = dict(
    info_path="nuscenes_dbinfos_train.pkl", data_root=data_root, rate=1.0,
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
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root, version=version,
                                                  pipeline=train_pipeline)))
test_dataloader = dict(dataset=dict(data_root=data_root, version=version))
test_evaluator = dict(data_root=data_root, version=version)
val_dataloader = None
val_evaluator = None
val_cfg = None

train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=10 ** 9)
param_scheduler = []
custom_hooks = [dict(type="TimeBudgetHook", max_iters=4300, warmup=0.05,
                     warmup_start=0.1, end_factor=0.01)]
default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=10 ** 9, by_epoch=False, save_last=False),
    logger=dict(type="LoggerHook", interval=20))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
