# Runtime settings every Interlace config inherits: `_base_ = ['../_base_/default_runtime.py']`.
# Types resolve in the `interlace` scope (children of mmengine's registries).
default_scope = "interlace"

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    # `tools/train.py --launcher ...` switches to gloo when CUDA is unavailable.
    dist_cfg=dict(backend="nccl"),
)

log_processor = dict(type="LogProcessor", window_size=50, by_epoch=True)
vis_backends = [dict(type="LocalVisBackend")]
# No fixed `name`: each run gets its own visualizer (named after the run), so several
# runs in one process (tools/check.py) log to their own work dirs.
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
log_level = "INFO"
load_from = None
resume = False
