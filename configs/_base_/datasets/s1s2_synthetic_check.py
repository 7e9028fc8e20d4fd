# The generated Sentinel-1/2 set of the remote-sensing check (tools/check.py remote_sensing
# writes it): 8 tiles of 256 x 256 px (10 m), 12 dates; the first two tiles are held out.
# Values are normalised with DATA_ROOT/band_stats.json (no labels used to compute it).
data_root = "data/checks/s1s2_synthetic"
train_tiles = ["31TGL", "32TDR", "32TER", "31TFL", "32TGR", "32THR"]
test_tiles = ["32TNR", "32TPR"]
chip = 32

_dataset = dict(type="SentinelTimeSeriesDataset", data_root=data_root, chip_size=chip,
                modalities=dict(hr=None), band_stats="auto", cache_samples=True)
train_pipeline = [dict(type="RandomFlipRotate")]
test_pipeline = []
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False, drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="interlace.collate_time_series"),
    dataset=dict(_dataset, tiles=train_tiles, pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="interlace.collate_time_series"),
    dataset=dict(_dataset, tiles=test_tiles, test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(type="SegmentationMetric", num_classes=6)
