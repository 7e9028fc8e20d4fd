# CPU-sized SkySense land-cover segmentation on the synthetic S1/S2 tiles:
#   python tools/misc/make_synthetic.py remote_sensing --out data/synthetic_s1s2
# Train on tiles 32TNR and 32TPR, validate on 31TGL. 32 px chips, 32 channels, 2 temporal
# layers, geo-context prototypes (updated during training). Drop a modality at test time
# with `--cfg-options model.drop_modalities="('sar',)"`.
_base_ = ["../_base_/models/skysense_conv_tiny_segmentor.py", "../_base_/default_runtime.py"]

chip = 32
num_classes = 6

_dataset = dict(type="SentinelTimeSeriesDataset", data_root="data/synthetic_s1s2",
                chip_size=chip, modalities=dict(hr=None))
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="interlace.collate_time_series"),
    dataset=dict(_dataset, tiles=["32TNR", "32TPR"]))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="interlace.collate_time_series"),
    dataset=dict(_dataset, tiles=["31TGL"], test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type="SegmentationMetric", num_classes=num_classes)
test_evaluator = val_evaluator

train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=3, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.01))
param_scheduler = [dict(type="CosineAnnealingLR", T_max=3, eta_min=1e-5, by_epoch=True, begin=0,
                        end=3, convert_to_iter_based=True)]
default_hooks = dict(logger=dict(interval=5))

# --- scene inference (tools/infer.py) ---------------------------------------------------
# Each input names a tile by one of its rasters under DATA_ROOT/<folder>/ (its label, or
# one S2 date when there is no label); data_root=None takes DATA_ROOT from the input's
# path. The tile is read in overlapping windows, the windows' class probabilities are
# blended over the overlaps, and one COG per tile is written with the tile's CRS,
# transform, nodata and the land-cover colour table:
#   python tools/infer.py configs/remote_sensing/skysense_segment_synthetic_tiny.py CKPT \
#       data/synthetic_s1s2/labels --out work_dirs/maps [--drop sar]
infer_cfg = dict(
    reader=dict(type="SceneWindowReader", data_root=None, window=128, overlap=32,
                dataset=dict(modalities=dict(hr=None))),
    writer=dict(type="GeoTiffMapWriter", num_classes=num_classes))
