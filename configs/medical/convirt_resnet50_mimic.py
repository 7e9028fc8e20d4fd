# ConVIRT baseline: MGCA's ResNet-50 setup with the instance (image-report InfoNCE) loss only.
_base_ = ["./mgca_resnet50_mimic.py"]

model = dict(loss_weights=dict(instance=1.0, token=0.0, prototype=0.0))
# No prototype loss, nothing to freeze.
custom_hooks = []
model_wrapper_cfg = dict(type="MMDistributedDataParallel", find_unused_parameters=False)
