# A CPU-sized SkySense pre-training run on the synthetic S1/S2 tiles, to check the pipeline:
#   python tools/misc/make_synthetic.py remote_sensing --out data/synthetic_s1s2
# Small conv backbones (stride 2), 32 px chips, up to 12 dates, 32 channels, 2 temporal
# layers, no high-resolution stream.
_base_ = ["./skysense_paper.py"]

embed_dims = 32
chip = 32

model = dict(
    encoder=dict(
        _delete_=True,
        type="FactorizedSpatioTemporalEncoder",
        backbones=dict(
            optical=dict(type="ConvSpatialEncoder", in_channels=10, out_channels=embed_dims,
                         stride=2),
            sar=dict(type="ConvSpatialEncoder", in_channels=2, out_channels=embed_dims,
                     stride=2)),
        embed_dims=embed_dims, num_layers=2, num_heads=4, grid_stride=2,
        # annual sine/cosine start of the learned date table: from a random start, two
        # crops with the same spectra and green-up dates 80 days apart stay confused
        # (configs/remote_sensing/skysense/README.md)
        day_of_year_init="harmonic"),
    projection_dims=32,
    # Views keep 10 of 12 dates: with 6, a view often misses a crop's whole season and
    # the teacher-student match teaches the encoder to ignore the green-up date.
    crop_size=24, min_overlap=4, num_view_dates=10,
    object_loss=dict(num_prototypes=8),
    distillation=dict(num_prototypes=64),
    loss_weights=dict(pixel=1.0, object=0.5, image=1.0, cross_modal=0.5),
    geo_prototypes=dict(lat_bins=4, lon_bins=8, num_prototypes=8),
    data_preprocessor=dict(high_res_key=None),  # the tiny encoder has no high-res stream
)

train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root="data/synthetic_s1s2", chip_size=chip, modalities=dict(hr=None)))

train_cfg = dict(max_epochs=2)
optim_wrapper = dict(_delete_=True, type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05))
param_scheduler = [dict(type="CosineAnnealingLR", T_max=2, eta_min=1e-5, by_epoch=True,
                        begin=0, end=2, convert_to_iter_based=True)]
custom_hooks = [dict(type="EMATeacherHook", momentum=0.99)]
default_hooks = dict(logger=dict(interval=1))
