"""DeepInteraction++-style dual-stream interaction core, written once for every pair of
modalities: streams, correspondences, the DualStreamEncoder and the
PredictiveInteractionDecoder."""
from .correspondence import Correspondence, Footprint, RayLayout  # noqa: F401
from .encoder import DualStreamEncoder  # noqa: F401
from .encoder_layer import (DualStreamEncoderLayer, PooledSpreading, RaySpreading,  # noqa: F401
                            bilinear_splat)
from .segment_attention import SampledCrossAttention, segment_attention  # noqa: F401
from .dense_correspondence import DenseCorrespondence  # noqa: F401
from .grid_correspondence import GridCorrespondence  # noqa: F401
from .projection_correspondence import ProjectionCorrespondence  # noqa: F401
from .projection_geometry import densify_depth, project_points, unproject_pixels  # noqa: F401
from .streams import Gathered, StreamFeatures  # noqa: F401
