# 5 % labels, the encoder and geo-context prototypes started from the SkySense pre-training
# run (its work dir's last checkpoint). The segmentor names them as the pre-trainer does
# (encoder.*, geo_prototypes.*), so no key map; the pre-trainer's teacher and projection
# heads have no place in the segmentor and are reported as unused.
_base_ = ["./skysense_conv-tiny_b8-100it_s1s2-check-5pct_seg.py"]

model = dict(init_cfg=dict(
    type="Pretrained", checkpoint="work_dirs/skysense_conv-tiny_b8-4900it_s1s2-check_pretrain"))
