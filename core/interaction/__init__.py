"""DeepInteraction++-style dual-stream interaction core, written once for every pair of
modalities: streams, correspondences, the DualStreamEncoder and the
PredictiveInteractionDecoder."""
from .correspondence import Correspondence, Footprint, RayLayout  # noqa: F401
from .streams import Gathered, StreamFeatures  # noqa: F401
