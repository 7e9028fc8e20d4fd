# DeepInteraction at CPU size on the generated database (see _base_/synthetic_tiny.py):
# the LiDAR stream of transfusion_l_synthetic_tiny.py (64 x 64 BEV of 1.6 m cells over
# +-51.2 m), 6 cameras at 96 x 160 through ResNet-18 + FPN (32 channels, stride 4 -> 24 x 40),
# a 2-layer x 32 interaction encoder, 64 queries, decoder layers ('a', 'b', 'a'); ResNet-18
# instead of the paper's ResNet-50, for CPU time.
#   python tools/train.py configs/driving/deepinteraction_r18_synthetic_tiny.py
# Two-stage start (train the LiDAR-only config first):
#   python tools/model_converters/merge_checkpoints.py configs/driving/deepinteraction_r18_synthetic_tiny.py \
#       --lidar work_dirs/transfusion_l_synthetic_tiny/epoch_4.pth --out work_dirs/di_tiny_init.pth
# Both stages, scored against each other on held-out generated scenes (results:
# configs/driving/deepinteraction/README.md):
#   python tools/check.py driving
_base_ = ["./_base_/synthetic_tiny.py"]

point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
embed_dims = 32

model = dict(
    type="DeepInteractionDetector",
    data_preprocessor=dict(
        type="DrivingDataPreprocessor", pad_size_divisor=32,
        voxel_layer={{_base_.voxel_layer}}),
    lidar_encoder={{_base_.lidar_encoder}},
    camera_encoder=dict(
        type="MultiViewImageEncoder",
        backbone=dict(type="MonaiResNetBackbone", depth=18, out_indices=(0, 1, 2, 3),
                      frozen_stages=-1, norm_eval=False),
        neck=dict(type="FeaturePyramidNetwork", in_channels=[64, 128, 256, 512],
                  out_channels=32, num_outs=4, out_indices=[0])),
    pillar_grid=dict(type="PillarPointGrid", point_cloud_range=point_cloud_range,
                     pillar_size=(1.6, 1.6), max_points_per_pillar=20),
    interaction_encoder=dict(type="DualStreamEncoder", num_layers=2, num_heads=4, ffn_dims=64,
                             num_points=4, spreading="ray", num_summary=4),
    embed_dims=embed_dims,
    num_bev_levels=1,
    use_lidar_only_heatmap=True,
    ray_depths=[1.0 + 4.0 * i for i in range(13)],
    bbox_head=dict(
        type="InteractionDetectionHead", num_classes=10, embed_dims=embed_dims, num_queries=64,
        layer_streams=("a", "b", "a"), heatmap_channels=32,
        bbox_coder={{_base_.bbox_coder}},
        decoder=dict(num_heads=4, ffn_dims=64, grid_size=3, dynamic_dims=8)),
    drop_modalities=(),
    drop_views=0,
)
default_hooks = dict(logger=dict(interval=5))

# Batch inference (tools/infer.py): one input per sample token of the val infos, one
# <token>.json of submission-format boxes per sample; merge them into one submission with
# tools/analysis_tools/merge_submission.py (see docs/data/driving.md). Another database:
# --cfg-options infer_cfg.reader.data_root=DIR (info_file is relative to it).
infer_cfg = dict(
    reader=dict(type="NuScenesSampleReader", info_file="nuscenes_infos_val.pkl",
                data_root={{_base_.data_root}}, pipeline={{_base_.test_pipeline}},
                metainfo=dict(classes={{_base_.class_names}})),
    writer=dict(type="NuScenesSubmissionWriter",
                modality=dict(use_lidar=True, use_camera=True)))
