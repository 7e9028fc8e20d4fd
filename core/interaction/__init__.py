"""DeepInteraction++-style dual-stream interaction core, written once for every pair of
modalities: streams, correspondences, the DualStreamEncoder and the
PredictiveInteractionDecoder."""
from .correspondence import Correspondence, Footprint, RayLayout  # noqa: F401
from .encoder import DualStreamEncoder  # noqa: F401
from .encoder_layer import DualStreamEncoderLayer  # noqa: F401
from .spreading import PooledSpreading, RaySpreading, bilinear_splat  # noqa: F401
from .segment_attention import SampledCrossAttention, segment_attention  # noqa: F401
from .decoder import DecoderOutput, PredictiveInteractionDecoder  # noqa: F401
from .decoder_layer import PredictiveInteractionDecoderLayer  # noqa: F401
from .footprint_sampling import (footprint_grid, sample_footprint_on_map,  # noqa: F401
                                 scale_footprint, square_footprint)
from .query_init import HeatmapQueryInitializer, InitialQueries, local_maximum_mask  # noqa: F401
from .dense_correspondence import DenseCorrespondence  # noqa: F401
from .grid_correspondence import GridCorrespondence  # noqa: F401
from .projection_correspondence import ProjectionCorrespondence  # noqa: F401
from .projection_geometry import densify_depth, project_points, unproject_pixels  # noqa: F401
from .streams import Gathered, StreamFeatures  # noqa: F401
