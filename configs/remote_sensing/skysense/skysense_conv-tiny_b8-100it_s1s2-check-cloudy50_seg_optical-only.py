# As the cloudy-dates config, trained and tested without the SAR stream.
_base_ = ["./skysense_conv-tiny_b8-100it_s1s2-check-cloudy50_seg.py"]

model = dict(drop_modalities=("sar",))
