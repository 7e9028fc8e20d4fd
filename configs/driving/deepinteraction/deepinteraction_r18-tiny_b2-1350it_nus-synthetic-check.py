# The fusion stage of the driving check (python tools/check.py driving): the tiny
# DeepInteraction (ResNet-18 cameras) on the check's generated nuScenes-format set,
# started as DeepInteraction starts: the LiDAR stream, heatmap and first decoder layer from
# the LiDAR-only stage's last checkpoint (key map `lidar_only_to_deepinteraction`, see
# docs/weights.md), the image backbone from scratch (no ImageNet weights offline);
# 1,350 iterations of batch 2 (the length of the earlier time-budgeted run, in the
# model-zoo README; fixed so the run repeats), lr warm-up then cosine over the budget.
_base_ = ["../deepinteraction_r18_synthetic_tiny.py"]

data_root = "data/checks/nuscenes_synthetic"
version = "v1.0-trainval"
model = dict(init_cfg=dict(
    type="Pretrained", key_map="lidar_only_to_deepinteraction",
    checkpoint="work_dirs/transfusion-l_voxel0.4-tiny_b2-4300it_nus-synthetic-check"))
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root, version=version)))
test_dataloader = dict(dataset=dict(data_root=data_root, version=version))
test_evaluator = dict(data_root=data_root, version=version)
val_dataloader = None
val_evaluator = None
val_cfg = None

train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=10 ** 9)
param_scheduler = []
custom_hooks = [dict(type="TimeBudgetHook", max_iters=1350, warmup=0.05,
                     warmup_start=0.1, end_factor=0.01)]
default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=10 ** 9, by_epoch=False, save_last=False),
    logger=dict(type="LoggerHook", interval=20))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
