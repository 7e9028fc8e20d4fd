"""Driving camera stream: image backbones (MONAI ResNet / Swin), their pretrained-weight
mapping, and the multi-view encoder (backbone + FPN over any number of camera views)."""
from .image_backbones import MonaiResNetBackbone, MonaiSwinBackbone
from .multi_view import MultiViewImageEncoder
from .pretrained_weights import (convert_resnet_state_dict, convert_swin_state_dict,
                                 detect_swin_format, load_converted_weights)

__all__ = ["MonaiResNetBackbone", "MonaiSwinBackbone", "MultiViewImageEncoder",
           "convert_resnet_state_dict", "convert_swin_state_dict", "detect_swin_format",
           "load_converted_weights"]
