# deepinteraction_r50_synthetic_tiny.py + batch inference (tools/infer.py): one input per
# sample token of the val infos, one <token>.json of submission-format boxes per sample.
#   python tools/analysis_tools/merge_submission.py \
#       --tokens-from data/nuscenes_synthetic/nuscenes_infos_val.pkl --out work_dirs/val_tokens.txt
#   python tools/infer.py configs/driving/deepinteraction_r50_synthetic_tiny_infer.py CKPT \
#       @work_dirs/val_tokens.txt --out work_dirs/di_tiny_preds [--drop camera] [--drop-views 2]
#   python tools/analysis_tools/merge_submission.py work_dirs/di_tiny_preds \
#       --info data/nuscenes_synthetic/nuscenes_infos_val.pkl --out results_nusc.json
# Another database: --cfg-options infer_cfg.reader.data_root=DIR (info_file is relative to it).
_base_ = ["./deepinteraction_r50_synthetic_tiny.py"]

infer_cfg = dict(
    reader=dict(type="NuScenesSampleReader",
                info_file={{_base_.test_dataloader.dataset.ann_file}},
                data_root={{_base_.test_dataloader.dataset.data_root}},
                pipeline={{_base_.test_dataloader.dataset.pipeline}},
                metainfo={{_base_.test_dataloader.dataset.metainfo}}),
    writer=dict(type="NuScenesSubmissionWriter",
                modality=dict(use_lidar=True, use_camera=True)))
