# DeepInteraction++ (Swin-T) on nuScenes (docs/methods/deepinteraction.md): as
# deepinteraction_r50_nus.py with a Swin-T camera backbone (embed 96, depths 2-2-6-2) +
# FPN at strides 4 and 8, two BEV levels (180 x 180 and 90 x 90) in the interaction
# encoder, look-forward-twice centre refinement in the decoder, and 9 epochs.
#   python tools/model_converters/merge_checkpoints.py configs/driving/deepinteraction_pp_swint_nus.py \
#       --lidar work_dirs/transfusion_l_nus/epoch_20.pth \
#       --image swin_tiny_patch4_window7_224.pth --out work_dirs/deepinteraction_pp_init.pth
_base_ = ["./deepinteraction_r50_nus.py"]

model = dict(
    camera_encoder=dict(
        _delete_=True, type="MultiViewImageEncoder",
        backbone=dict(type="MonaiSwinBackbone", embed_dim=96, depths=(2, 2, 6, 2),
                      num_heads=(3, 6, 12, 24), window_size=7, drop_path_rate=0.2,
                      out_indices=(0, 1, 2, 3)),
        neck=dict(type="FeaturePyramidNetwork", in_channels=[96, 192, 384, 768],
                  out_channels=256, num_outs=4, out_indices=[0, 1])),
    num_bev_levels=2,
    bbox_head=dict(decoder=dict(look_forward_twice=True)),
)

lr = 1e-4
max_epochs = 9
rise_epochs = 3.6  # 40 % of max_epochs
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
