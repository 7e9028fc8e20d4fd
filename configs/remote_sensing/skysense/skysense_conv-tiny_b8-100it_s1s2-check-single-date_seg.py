# Every training chip labelled, one date per chip (a clear S2 date and the S1 of the same
# pass): drawn anew each step in training, fixed per chip at test.
_base_ = ["./skysense_conv-tiny_b8-100it_s1s2-check_seg.py"]

train_dataloader = dict(dataset=dict(pipeline=[dict(type="SingleDateView", random=True),
                                               dict(type="RandomFlipRotate")]))
test_dataloader = dict(dataset=dict(pipeline=[dict(type="SingleDateView", random=False)]))
