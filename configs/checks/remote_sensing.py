# The remote-sensing check (python tools/check.py remote_sensing): SkySense on generated
# Sentinel-1/2 tiles (8 tiles of 256 x 256 px, 12 dates, the first two held out).
#  1. pre-training helps with few labels: pre-trained minus random initialisation, 5 % of
#     the training chips labelled, mean over 5 labelled subsets;
#  2. SAR helps under clouds: SAR+optical above optical only with >= 50 % cloudy dates;
#  3. time helps: the temporal model above a single-date one on the two crops that only
#     their seasons tell apart.
# Every step is a complete config under configs/remote_sensing/skysense/, trained and
# scored as tools/train.py and tools/test.py would.
domain = "remote_sensing"
threads = 1  # the tiny model's ops are small; one thread per run wastes least
data = dict(root="data/checks/s1s2_synthetic", tiles=8, size=256, dates=12, seed=0)

_dir = "configs/remote_sensing/skysense/"
_pretrain = _dir + "skysense_conv-tiny_b8-4900it_s1s2-check_pretrain.py"
_seg = _dir + "skysense_conv-tiny_b8-100it_s1s2-check_seg.py"
_few = _dir + "skysense_conv-tiny_b8-100it_s1s2-check-5pct_seg.py"
_few_pre = _dir + "skysense_conv-tiny_b8-100it_s1s2-check-5pct_seg_pretrained.py"
_cloudy = _dir + "skysense_conv-tiny_b8-100it_s1s2-check-cloudy50_seg.py"
_cloudy_optical = _dir + "skysense_conv-tiny_b8-100it_s1s2-check-cloudy50_seg_optical-only.py"
_single = _dir + "skysense_conv-tiny_b8-100it_s1s2-check-single-date_seg.py"
_seeds = [0, 1, 2, 3, 4]


def _pair(start, config, seed):
    """Train one labelled subset (seed = label seed) and score it."""
    name = f"{start}_seed{seed}"
    options = {"randomness.seed": seed, "train_dataloader.dataset.label_seed": seed}
    return [dict(name=name, kind="train", config=config, cfg_options=options,
                 work_dir=f"work_dirs/checks/remote_sensing/{name}"),
            dict(name=f"{name}_test", kind="test", config=config, checkpoint=name)]


steps = [dict(name="pretrain", kind="train", config=_pretrain)]
for _seed in _seeds:
    steps += _pair("pretrained", _few_pre, _seed) + _pair("random", _few, _seed)
steps += [
    dict(name="cloudy_sar_optical", kind="train", config=_cloudy),
    dict(name="cloudy_sar_optical_test", kind="test", config=_cloudy,
         checkpoint="cloudy_sar_optical"),
    dict(name="cloudy_optical", kind="train", config=_cloudy_optical),
    dict(name="cloudy_optical_test", kind="test", config=_cloudy_optical,
         checkpoint="cloudy_optical"),
    dict(name="temporal", kind="train", config=_seg),
    dict(name="temporal_test", kind="test", config=_seg, checkpoint="temporal"),
    dict(name="single_date", kind="train", config=_single),
    dict(name="single_date_test", kind="test", config=_single, checkpoint="single_date"),
]


def _mean(prefix):
    return "(" + " + ".join(f"{prefix}_seed{s}_test.mIoU" for s in _seeds) + f") / {len(_seeds)}"


# mIoU is a fraction here: 0.05 is 5 points.
thresholds = [
    dict(name="pre-trained minus random init, 5 % labels (mIoU)",
         value=f"{_mean('pretrained')} - {_mean('random')}", min=0.05),
    dict(name="SAR+optical minus optical only, >= 50 % cloudy dates (mIoU)",
         value="cloudy_sar_optical_test.mIoU - cloudy_optical_test.mIoU", min=0.0),
    dict(name="temporal minus single date, crop_early (IoU)",
         value="temporal_test.IoU.crop_early - single_date_test.IoU.crop_early", min=0.0),
    dict(name="temporal minus single date, crop_late (IoU)",
         value="temporal_test.IoU.crop_late - single_date_test.IoU.crop_late", min=0.0),
]

# --smoke: a small set and 2 iterations per run, to test the sequence (not a result). It
# writes data/checks/ and work_dirs/ under the current folder: run it in a scratch folder.
smoke = dict(data=dict(size=64, dates=4),
             cfg_options={"budget_iters": 2, "train_dataloader.drop_last": False})

# What `tools/check.py remote_sensing --update-zoo` records in the model zoo (mIoU x 1).
_zoo = dict(metafile="configs/remote_sensing/skysense/metafile.yml", collection="SkySense",
            task="Semantic Segmentation", dataset="generated S1/S2, 2 held-out tiles",
            command="python tools/check.py remote_sensing")
model_zoo = [
    dict(_zoo, name="skysense_conv-tiny_b8-100it_s1s2-check-5pct_seg_pretrained", config=_few_pre,
         data="5 % of the training chips, mean of 5 subsets", budget="4900 + 100 it",
         metrics=dict(mIoU=_mean("pretrained"))),
    dict(_zoo, name="skysense_conv-tiny_b8-100it_s1s2-check-5pct_seg", config=_few,
         data="5 % of the training chips, mean of 5 subsets", budget="100 it",
         metrics=dict(mIoU=_mean("random"))),
    dict(_zoo, name="skysense_conv-tiny_b8-100it_s1s2-check-cloudy50_seg", config=_cloudy,
         data="all training chips, >= 50 % cloudy dates", budget="100 it",
         metrics=dict(mIoU="cloudy_sar_optical_test.mIoU")),
    dict(_zoo, name="skysense_conv-tiny_b8-100it_s1s2-check-cloudy50_seg_optical-only",
         config=_cloudy_optical, data="all training chips, >= 50 % cloudy dates",
         budget="100 it", metrics=dict(mIoU="cloudy_optical_test.mIoU")),
    dict(_zoo, name="skysense_conv-tiny_b8-100it_s1s2-check_seg", config=_seg,
         data="all training chips, 12 dates", budget="100 it",
         metrics={"mIoU": "temporal_test.mIoU", "IoU crop_early": "temporal_test.IoU.crop_early",
                  "IoU crop_late": "temporal_test.IoU.crop_late"}),
    dict(_zoo, name="skysense_conv-tiny_b8-100it_s1s2-check-single-date_seg", config=_single,
         data="all training chips, one date", budget="100 it",
         metrics={"mIoU": "single_date_test.mIoU",
                  "IoU crop_early": "single_date_test.IoU.crop_early",
                  "IoU crop_late": "single_date_test.IoU.crop_late"}),
]
