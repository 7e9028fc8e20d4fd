# Every training chip labelled, at least half of each chip's dates cloudy (whole dates
# masked as overcast where the generated clouds are fewer), in training and test alike.
_base_ = ["./skysense_conv-tiny_b8-100it_s1s2-check_seg.py"]

train_dataloader = dict(dataset=dict(pipeline=[dict(type="CloudyDateMasking", fraction=0.5),
                                               dict(type="RandomFlipRotate")]))
test_dataloader = dict(dataset=dict(pipeline=[dict(type="CloudyDateMasking", fraction=0.5)]))
