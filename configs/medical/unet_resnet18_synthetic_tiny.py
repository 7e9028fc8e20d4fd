# A CPU-sized segmentation run on the synthetic MIMIC-CXR tree and its masks:
#   python tools/misc/make_synthetic.py medical --out data/synthetic_mimic --studies 200
#   python tools/train.py configs/medical/unet_resnet18_synthetic_tiny.py
# Encoder: random (frozen, so only a smoke test) unless an MGCA tiny checkpoint is given:
#   --cfg-options model.pretrained=work_dirs/mgca_resnet18_synthetic_tiny/epoch_3.pth
# or trained with the decoder: --cfg-options model.freeze_encoder=False.
# Other findings (also effusion, device):
#   --cfg-options train_dataloader.dataset.finding=heart val_dataloader.dataset.finding=heart
_base_ = ["./unet_resnet50_mgca_siim.py"]

image_size = 64
max_epochs = 10
finding = "opacity"

model = dict(image_encoder=dict(depth=18), init_cfg=None,
             decoder_channels=(128, 64, 32, 16, 8))

_pipeline = [
    dict(type="LoadCxrImaged"),
    dict(type="LoadCxrMaskd"),
    dict(type="ResizeLongestPadSegd", size=image_size),
    dict(type="CxrNormalized", keys="img", max_value=255.0),
]
# MIMIC mode: split from the split CSV, masks from <data_root>/masks/<finding>/.
_dataset = dict(type="CxrSegmentationDataset", data_root="data/synthetic_mimic",
                finding=finding, img_dir=None, mask_dir=None, pipeline=_pipeline)
train_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False,
                        dataset=dict(_dataset, split="train"))
val_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False,
                      dataset=dict(_dataset, split="validate", test_mode=True))
test_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False,
                       dataset=dict(_dataset, split="test", test_mode=True))

train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type="CosineAnnealingLR", T_max=max_epochs, eta_min=1e-5,
                        by_epoch=True, convert_to_iter_based=True)]
default_hooks = dict(logger=dict(interval=5))
infer_cfg = dict(reader=dict(image_size=image_size))
