# 5 % of the training chips labelled (drawn with label_seed; seed and label_seed are set
# together per labelled subset), from random initialisation.
_base_ = ["./skysense_conv-tiny_b8-100it_s1s2-check_seg.py"]

train_dataloader = dict(dataset=dict(label_fraction=0.05, label_seed=0))
