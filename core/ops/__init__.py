"""Pure-PyTorch ops that run on CPU and GPU with no compiled extension.

Importing this package registers the op modules (``MultiScaleSampledAttention``,
``LocalWindowAttention``, ``Voxelization``) in the ``interlace`` MODELS registry.
spconv is imported only through :mod:`interlace.core.ops.sparse_conv`, which also applies
the CPU-backward fix; import it where sparse convolutions are used.
"""
from .rotated_boxes import (bev_intersection_aligned, bev_iou_rotated,  # noqa: F401
                            bev_iou_rotated_aligned, bottom_center_to_center, box_corners_3d,
                            box_corners_bev, center_to_bottom_center, iou_3d, iou_3d_aligned,
                            points_in_boxes, points_in_boxes_index)
from .sampled_attention import (MultiScaleSampledAttention,  # noqa: F401
                                multi_scale_sampled_attention,
                                multi_scale_sampled_attention_reference)
from .voxelize import (Voxelization, dynamic_scatter_mean, grid_size,  # noqa: F401
                       mean_voxel_features, voxelize_dynamic, voxelize_hard)
from .window_attention import (LocalWindowAttention, local_window_attention,  # noqa: F401
                               local_window_attention_dense)

__all__ = [
    "MultiScaleSampledAttention", "multi_scale_sampled_attention",
    "multi_scale_sampled_attention_reference", "LocalWindowAttention", "local_window_attention",
    "local_window_attention_dense", "Voxelization", "voxelize_hard", "voxelize_dynamic",
    "dynamic_scatter_mean", "mean_voxel_features", "grid_size", "bottom_center_to_center",
    "center_to_bottom_center", "box_corners_3d", "box_corners_bev", "points_in_boxes",
    "points_in_boxes_index", "bev_iou_rotated", "bev_iou_rotated_aligned",
    "bev_intersection_aligned", "iou_3d", "iou_3d_aligned",
]
