# The tiny SkySense segmentor fine-tuned for 100 iterations (batch 8) on the remote-sensing
# check's generated tiles, from random initialisation, every training chip labelled.
# Variants in this folder change one thing each (labels, start, clouds, dates).
_base_ = ["../../_base_/models/skysense_conv_tiny_segmentor.py",
          "../../_base_/datasets/s1s2_synthetic_check.py",
          "../../_base_/schedules/time_budget.py",
          "../../_base_/default_runtime.py"]

optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.01))
custom_hooks = [dict(type="TimeBudgetHook", max_iters=100, warmup=0.05, warmup_start=0.01)]
default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=10 ** 9, by_epoch=False, save_last=False),
    logger=dict(type="LoggerHook", interval=20))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
