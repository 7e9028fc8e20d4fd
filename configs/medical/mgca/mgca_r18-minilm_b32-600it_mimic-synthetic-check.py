# MGCA as published (instance, token and prototype alignment), pre-trained for the medical check (python tools/check.py medical) on its
# generated MIMIC-CXR-JPG set (1,500 studies at 192 px): 600 iterations of batch 32 (the
# length of the earlier time-budgeted runs, in the model-zoo README; fixed so the run repeats), lr warm-up
# over the first 10 % then cosine to 0 over the budget.
_base_ = ["../mgca_resnet18_minilm_synthetic.py"]

data_root = "data/checks/mimic_synthetic"
train_dataloader = dict(dataset=dict(data_root=data_root))
train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=10 ** 9)
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = []
custom_hooks = [dict(type="PrototypeFreezeHook"),
                dict(type="TimeBudgetHook", max_iters=600, warmup=0.1,
                     warmup_start=0.01)]
default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=10 ** 9, by_epoch=False, save_last=False),
    logger=dict(type="LoggerHook", interval=20))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
