# MGCA with a ViT-B/16 image encoder (the paper's best variant); otherwise as ResNet-50.
_base_ = ["./mgca_resnet50_mimic.py"]

model = dict(
    image_encoder=dict(_delete_=True, type="ViTImageEncoder", img_size=224, patch_size=16,
                       hidden_size=768, num_layers=12, num_heads=12, in_channels=1),
)
