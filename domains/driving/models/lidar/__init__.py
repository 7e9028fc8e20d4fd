"""The LiDAR stream of the driving detectors (DeepInteraction++, TransFusion-L): mean
voxel features (hard or dynamic voxels, optionally normalised), SECOND-style sparse 3D
encoder flattened to BEV, SECOND 2D backbone and FPN neck (chained by
``detectors.LidarBEVEncoder``), and the pillar grid of raw points for image-to-LiDAR
sampling. Importing this package registers them in ``MODELS``."""
from .pillar_grid import PillarPointGrid
from .second_backbone import SECONDBackbone
from .second_fpn import SECONDFPN
from .sparse_encoder import SparseEncoderSECOND, SparseResidualBlock
from .voxel_encoder import (DynamicMeanVoxelEncoder, MeanVoxelEncoder,
                            point_feature_normalization)

__all__ = ["MeanVoxelEncoder", "DynamicMeanVoxelEncoder", "point_feature_normalization",
           "SparseEncoderSECOND", "SparseResidualBlock", "SECONDBackbone",
           "SECONDFPN", "PillarPointGrid"]
