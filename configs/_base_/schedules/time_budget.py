# A run measured by a budget instead of epochs: TimeBudgetHook ends it and drives the lr
# (linear warm-up, then cosine) over the share of the budget spent, so there is no
# param_scheduler. A config that inherits this sets the budget and the optimizer:
#   custom_hooks = [dict(type="TimeBudgetHook", max_minutes=12, clock="cpu")]
#   (max_iters=... instead gives a deterministic run)
train_cfg = dict(type="IterBasedTrainLoop", max_iters=10 ** 9, val_interval=10 ** 9)
val_cfg = None
test_cfg = dict(type="TestLoop")
param_scheduler = []
