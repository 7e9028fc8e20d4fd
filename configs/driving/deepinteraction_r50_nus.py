# DeepInteraction (ResNet-50) on nuScenes (docs/methods/deepinteraction.md): the
# TransFusion-L LiDAR stream,
# 6 cameras at 448 x 800 through ResNet-50 + FPN (256 channels, stride-4 level only), a
# 2-layer x 128 dual-stream interaction encoder (FFN 512), 200 queries, decoder layers
# LiDAR, then camera / LiDAR alternating (1 + 4), the LiDAR-only heatmap averaged into the
# query selection; AdamW + cyclic LR for 6 epochs, CBGS.
# Initialise from TransFusion-L + an ImageNet ResNet-50 (tools/model_converters/):
#   python tools/model_converters/merge_checkpoints.py configs/driving/deepinteraction_r50_nus.py \
#       --lidar work_dirs/transfusion_l_nus/epoch_20.pth --image resnet50-0676ba61.pth \
#       --out work_dirs/deepinteraction_r50_init.pth
#   python tools/train.py configs/driving/deepinteraction_r50_nus.py \
#       --cfg-options load_from=work_dirs/deepinteraction_r50_init.pth
_base_ = ["./_base_/nuscenes_fusion.py"]

voxel_size = [0.075, 0.075, 0.2]
point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
embed_dims = 128

model = dict(
    type="DeepInteractionDetector",
    data_preprocessor=dict(
        type="DrivingDataPreprocessor", pad_size_divisor=32,
        voxel_layer=dict(max_num_points=10, point_cloud_range=point_cloud_range,
                         voxel_size=voxel_size, max_voxels=(120000, 160000))),
    lidar_encoder=dict(
        type="LidarBEVEncoder",
        voxel_encoder=dict(type="MeanVoxelEncoder", num_features=5),
        middle_encoder=dict(type="SparseEncoderSECOND", in_channels=5,
                            sparse_shape=[41, 1440, 1440], output_channels=128),
        backbone=dict(type="SECONDBackbone", in_channels=256, out_channels=[128, 256],
                      layer_nums=[5, 5], layer_strides=[1, 2]),
        neck=dict(type="SECONDFPN", in_channels=[128, 256], out_channels=[256, 256],
                  upsample_strides=[1, 2])),
    camera_encoder=dict(
        type="MultiViewImageEncoder",
        backbone=dict(type="MonaiResNetBackbone", depth=50, out_indices=(0, 1, 2, 3),
                      frozen_stages=-1, norm_eval=True),
        neck=dict(type="FeaturePyramidNetwork", in_channels=[256, 512, 1024, 2048],
                  out_channels=256, num_outs=4, out_indices=[0])),
    # 0.6 m pillars = the 180 x 180 BEV cells; 20 raw points each for image sampling.
    pillar_grid=dict(type="PillarPointGrid", point_cloud_range=point_cloud_range,
                     pillar_size=(0.6, 0.6), max_points_per_pillar=20),
    interaction_encoder=dict(type="DualStreamEncoder", num_layers=2, num_heads=8,
                             ffn_dims=512, num_points=4, spreading="ray"),
    embed_dims=embed_dims,
    num_bev_levels=1,
    use_lidar_only_heatmap=True,
    bbox_head=dict(
        type="InteractionDetectionHead", num_classes=10, embed_dims=embed_dims,
        num_queries=200, layer_streams=("a", "b", "a", "b", "a"),
        bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size[:2],
                        out_size_factor=8,
                        post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0]),
        assigner=dict(cls_weight=0.15, reg_weight=0.25, iou_weight=0.25),
        # DeepInteraction (v1): no look-forward-twice (a DeepInteraction++ addition).
        decoder=dict(num_heads=8, ffn_dims=256, grid_size=7, enlarge_a=2.0,
                     look_forward_twice=False)),
    drop_modalities=(),
    drop_views=0,
)

lr = 1e-4
max_epochs = 6
rise_epochs = 2.4  # 40 % of max_epochs
param_scheduler = [
    dict(type="CosineAnnealingLR", T_max=rise_epochs, eta_min=lr * 10, begin=0,
         end=rise_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - rise_epochs, eta_min=lr * 1e-4,
         begin=rise_epochs, end=max_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type="CosineAnnealingMomentum", T_max=rise_epochs, eta_min=0.85 / 0.95, begin=0,
         end=rise_epochs, by_epoch=True, convert_to_iter_based=True),
    dict(type="CosineAnnealingMomentum", T_max=max_epochs - rise_epochs, eta_min=1,
         begin=rise_epochs, end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
