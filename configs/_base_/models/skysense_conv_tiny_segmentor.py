# The tiny SkySense land-cover segmentor (CPU size): small conv backbones per modality
# (stride 2), 32 channels, 2 temporal layers, geo-context prototypes updated in training.
embed_dims = 32
num_classes = 6  # water, urban, bare, forest, crop_early, crop_late

model = dict(
    type="SkySenseSegmentor",
    encoder=dict(
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
    head=dict(type="SegmentationHead", num_classes=num_classes, hidden_dims=64),
    geo_prototypes=dict(type="GeoContextPrototypes", lat_bins=4, lon_bins=8, num_prototypes=8),
    update_prototypes=True,
    drop_modalities=(),
    ignore_index=255,
    data_preprocessor=dict(type="TimeSeriesDataPreprocessor", streams=dict(optical="s2", sar="s1"),
                           high_res_key=None),
)
