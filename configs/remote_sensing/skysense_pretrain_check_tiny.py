# The tiny SkySense pre-training config as tools/remote_sensing_check.py runs it on the
# generated S1/S2 tiles (the script drives the loop and the budget; these are the model
# and optimiser settings it reads).
_base_ = ["./skysense_pretrain_synthetic_tiny.py"]
