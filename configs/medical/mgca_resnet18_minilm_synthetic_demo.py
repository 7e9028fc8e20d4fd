# `make demo`'s medical run (tools/demo.py): mgca_resnet18_minilm_synthetic.py for a few
# epochs on the tree the demo generates, so that it ends within its budget on a 2-core CPU.
_base_ = ["./mgca_resnet18_minilm_synthetic.py"]

max_epochs = 4
warmup_epochs = 1

train_dataloader = dict(dataset=dict(data_root="work_dirs/demo/medical/data"))
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-2, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - warmup_epochs, eta_min=0.0,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
