# ConVIRT baseline twin of mgca_resnet18_minilm_synthetic.py: the same encoders, data and
# schedule with the instance (image-report InfoNCE) loss only.
_base_ = ["./mgca_resnet18_minilm_synthetic.py"]

model = dict(loss_weights=dict(instance=1.0, token=0.0, prototype=0.0))
custom_hooks = []  # no prototype loss, nothing to freeze
model_wrapper_cfg = dict(type="MMDistributedDataParallel", find_unused_parameters=False)
