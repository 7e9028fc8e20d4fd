# The tiny SkySense pre-training config as tools/remote_sensing_check.py runs it on the
# generated S1/S2 tiles (the script drives the loop and the budget; these are the model
# and optimiser settings it reads).
_base_ = ["./skysense_pretrain_synthetic_tiny.py"]

# Pixel and image levels as InfoNCE (SkySense's contrastive form), not the prototype
# self-distillation of the base config: InfoNCE gives the larger gain when the encoder is
# fine-tuned, distillation when it stays frozen. SkySense fine-tunes downstream, so the
# check uses InfoNCE (results: configs/remote_sensing/skysense/README.md).
model = dict(distillation=None)
