# SkySense (CVPR 2024) pre-training at paper scale, as far as this repository reproduces it.
#
# Paper (see docs/methods/skysense.md): high-resolution optical through Swin-V2-H, Sentinel-2
# (10 bands B02..B12) and Sentinel-1 (VV, VH) time series each through a ViT-L; a factorized
# spatio-temporal encoder (per-date spatial encoding, day-of-year encoding, extra token);
# multi-granularity contrastive learning (pixel / object / image, per modality and fused,
# plus cross-modal alignment) with an EMA teacher; geo-context prototypes, ~4096 regions x
# 100 prototypes. About 2 B parameters.
#
# Not reproduced here:
# - the high-resolution backbone is MONAI's Swin (v1 blocks) at Swin-H size, not Swin-V2-H
#   (no Swin-V2 without timm);
# - no pretrained weights are shipped, the paper's pre-training corpus is not available;
# - chip sizes, patch sizes, temporal depth, optimiser settings, batch size and schedule
#   below are our choices, not figures from the paper;
# - the day-of-year table has 366 entries + padding (the paper: 365);
# - geo-context regions are an equal-angle lat/lon grid (64 x 64 = 4096 cells); the paper
#   does not say how its regions are drawn.
# To build it on a small machine, override the backbones (see the tiny configs).
_base_ = ["../_base_/default_runtime.py"]

embed_dims = 1024  # ViT-L width
s2_chip = 64
hr_chip = 512  # a 10 m S2 chip of 64 px is 640 m; 512 px of high-res at 1.25 m

model = dict(
    type="SkySensePretrainer",
    encoder=dict(
        type="FactorizedSpatioTemporalEncoder",
        backbones=dict(
            optical=dict(type="ViTSpatialEncoder", in_channels=10, image_size=s2_chip,
                         patch_size=4, hidden_size=1024, mlp_dim=4096, num_layers=24,
                         num_heads=16),
            sar=dict(type="ViTSpatialEncoder", in_channels=2, image_size=s2_chip, patch_size=4,
                     hidden_size=1024, mlp_dim=4096, num_layers=24, num_heads=16)),
        # Swin-H sized (C = 352, depths 2-2-18-2, head dim 32); read after stage 3: stride 32,
        # so 512 px of high-res land on the same 16 x 16 grid as 64 px of Sentinel.
        high_res_backbone=dict(type="SwinSpatialEncoder", in_channels=3, embed_dims=352,
                               depths=(2, 2, 18, 2), num_heads=(11, 22, 44, 88), window_size=8,
                               patch_size=4, out_stage=3),
        embed_dims=embed_dims, num_layers=4, num_heads=16, grid_stride=4,
        # 16 x 16 positions x batch sequences; chunks keep the attention matrices bounded.
        chunk_size=4096, checkpoint_chunks=True,
        # still a learned table of days; starts as annual sines/cosines (DayOfYearEncoding)
        day_of_year_init="harmonic"),
    projection_dims=256,
    crop_size=48, min_overlap=4, num_view_dates=8, temperature=0.1,
    object_loss=dict(num_prototypes=16, temperature=0.1),
    image_loss=dict(type="InstanceContrastiveLoss", temperature=0.2),
    # Pixel and image levels as DINO-style self-distillation over prototypes (the
    # teacher-student form; InfoNCE over a chip's cells learns position, not land cover).
    # Remove this to use InfoNCE (`temperature` / `image_loss` above).
    distillation=dict(num_prototypes=1024, student_temperature=0.1, teacher_temperature=0.04,
                      center_momentum=0.9),
    loss_weights=dict(pixel=1.0, object=1.0, image=1.0, cross_modal=1.0),
    geo_prototypes=dict(type="GeoContextPrototypes", lat_bins=64, lon_bins=64,
                        num_prototypes=100, momentum=0.99),
    data_preprocessor=dict(type="TimeSeriesDataPreprocessor",
                           streams=dict(optical="s2", sar="s1"), high_res_key="hr"),
)

train_dataloader = dict(
    batch_size=32, num_workers=8, persistent_workers=True, drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="interlace.collate_time_series"),
    dataset=dict(type="SentinelTimeSeriesDataset", data_root="data/skysense_pretrain",
                 chip_size=s2_chip))

train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=100)
optim_wrapper = dict(type="AmpOptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05),
                     clip_grad=dict(max_norm=3.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=95, eta_min=1e-6, by_epoch=True, begin=5, end=100,
         convert_to_iter_based=True),
]
# teacher = m * teacher + (1 - m) * student after every step, m rising 0.996 -> 1 (DINO).
custom_hooks = [dict(type="EMATeacherHook", momentum=0.996, end_momentum=1.0)]
