# MGCA's segmentation protocol (NeurIPS 2022; docs/methods/mgca.md): a U-Net decoder trained
# on the frozen pre-trained ResNet-50 image encoder, scored by Dice on SIIM pneumothorax
# with 1 / 10 / 100 % of the training images (published figures: docs/methods/mgca.md).
# Data: SIIM-ACR converted to PNG, images and masks (0 / 255) with matching names:
#   data/siim/{train,val,test}/images/<id>.png   data/siim/{train,val,test}/masks/<id>.png
# Encoder: an MGCA checkpoint, Interlace's (from configs/medical/mgca_resnet50_mimic.py) or
# a released .ckpt; its image encoder is loaded by the Pretrained initialiser, the rest
# ignored (docs/weights.md):
#   python tools/train.py configs/medical/unet_resnet50_mgca_siim.py \
#       --cfg-options model.init_cfg.checkpoint=work_dirs/mgca_resnet50_mimic/epoch_50.pth
# The optimiser below is ours: MGCA does not state its segmentation schedule.
_base_ = ["../_base_/default_runtime.py"]

image_size = 224   # the pre-training resolution; 512 suits small pneumothoraces better
max_epochs = 50
finding = "pneumothorax"

model = dict(
    type="CxrSegmenter",
    image_encoder=dict(type="ResNetImageEncoder", depth=50, in_channels=1),
    freeze_encoder=True,
    # the image encoder of an MGCA checkpoint of either kind; strict: every weight found
    init_cfg=dict(type="Pretrained", checkpoint="checkpoints/mgca_resnet50.pth",
                  key_map="mgca_image_encoder", target="image_encoder", strict=True),
    decoder_channels=(256, 128, 64, 32, 16),
    dice_weight=1.0,
    bce_weight=1.0,
    data_preprocessor=dict(type="CxrReportDataPreprocessor"),
)

# Same geometry for image and mask; no flips (laterality matters on a chest X-ray) and
# no crop, so the pneumothorax at the lung apex or periphery is never cut away.
train_pipeline = [
    dict(type="LoadCxrImaged"),
    dict(type="LoadCxrMaskd"),
    dict(type="ResizeLongestPadSegd", size=image_size),
    dict(type="CxrNormalized", keys="img", max_value=255.0),
]
test_pipeline = train_pipeline

_dataset = dict(type="CxrSegmentationDataset", data_root="data/siim", finding=finding)
train_dataloader = dict(
    batch_size=16, num_workers=4, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    # Samples carry per-image geometry; keep lists, stack in the preprocessor.
    collate_fn=dict(type="interlace.collate_image_reports"),
    dataset=dict(_dataset, img_dir="train/images", mask_dir="train/masks",
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=4, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="interlace.collate_image_reports"),
    dataset=dict(_dataset, img_dir="val/images", mask_dir="val/masks", test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = dict(val_dataloader, dataset=dict(
    _dataset, img_dir="test/images", mask_dir="test/masks", test_mode=True,
    pipeline=test_pipeline))

# Dice over every image; an empty mask predicted empty scores 1 (see CxrDiceMetric).
val_evaluator = dict(type="CxrDiceMetric", threshold=0.5)
test_evaluator = val_evaluator

train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=5e-4, weight_decay=1e-4))
param_scheduler = [dict(type="CosineAnnealingLR", T_max=max_epochs, eta_min=1e-6,
                        by_epoch=True, convert_to_iter_based=True)]
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=2,
                                     save_best="seg/dice", rule="greater"))

# tools/infer.py: <stem>.png (0 / 255) and <stem>.nii.gz per input image, at its size.
infer_cfg = dict(reader=dict(type="CxrImageReader", image_size=image_size),
                 writer=dict(type="CxrMaskWriter", formats=("png", "nii.gz"), threshold=0.5))
