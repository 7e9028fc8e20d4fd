# MGCA (NeurIPS 2022) with a ResNet-50 image encoder, pre-trained on MIMIC-CXR-JPG 2.0
# (frontal views, impression + findings). Paper settings: AdamW lr 2e-5, weight decay
# 0.05, cosine schedule with 40 % linear warm-up, 50 epochs, batch 144.
# Fill in `checkpoints/Bio_ClinicalBERT` (a local copy of emilyalsentzer/Bio_ClinicalBERT)
# and `data/mimic-cxr-jpg` (the folder holding files/ and the CSVs).
_base_ = ["../_base_/default_runtime.py"]

max_epochs = 50
warmup_epochs = 20  # 40 % of 50

model = dict(
    type="MGCA",
    image_encoder=dict(type="ResNetImageEncoder", depth=50, in_channels=1),
    text_encoder=dict(type="ReportTextEncoder", model_path="checkpoints/Bio_ClinicalBERT",
                      num_layers=6, max_length=112),
    embed_dims=128,
    hidden_dims=2048,
    instance_loss=dict(type="InstanceContrastiveLoss", temperature=0.07),
    token_loss=dict(type="TokenAlignmentLoss", attention_temperature=0.1, temperature=0.1),
    prototype_loss=dict(type="PrototypeAlignmentLoss", num_prototypes=500, epsilon=0.05,
                        sinkhorn_iterations=3, temperature=0.2, freeze_epochs=1),
    loss_weights=dict(instance=1.0, token=1.0, prototype=1.0),
    data_preprocessor=dict(type="CxrReportDataPreprocessor"),
)

train_pipeline = [
    dict(type="LoadCxrImaged"),
    dict(type="ResizeLongestPadd", size=256),
    dict(type="CxrCropd", size=224, random=True),
    dict(type="CxrNormalized", max_value=255.0),
]
train_dataloader = dict(
    batch_size=144,
    num_workers=8,
    persistent_workers=True,
    # A last batch of one sample would break the projection heads' BatchNorm and leave
    # the contrastive losses without negatives.
    drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    # Reports and sentence lists have no fixed size: keep lists, stack in the preprocessor.
    # (Scoped name: the Runner looks collate functions up in the root registry.)
    collate_fn=dict(type="interlace.collate_image_reports"),
    dataset=dict(type="MimicCxrDataset", data_root="data/mimic-cxr-jpg", split="train",
                 unit="image", pipeline=train_pipeline),
)

train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs)
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-5, betas=(0.9, 0.999), weight_decay=0.05),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - warmup_epochs, eta_min=0.0,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]

# Prototypes stay frozen during the first epoch (PrototypeAlignmentLoss.freeze_epochs).
custom_hooks = [dict(type="PrototypeFreezeHook")]
# With frozen prototypes their weight gets no gradient in epoch 0.
model_wrapper_cfg = dict(type="MMDistributedDataParallel", find_unused_parameters=True)
