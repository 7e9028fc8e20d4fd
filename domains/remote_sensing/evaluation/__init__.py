"""Remote-sensing evaluation: segmentation / change metrics, COG class-map writer,
sliding-window blending and PNG previews.

Importing this package registers ``SegmentationMetric`` and ``ChangeF1`` in ``METRICS``
and ``GeoTiffMapWriter`` (plus, through the data package, ``SceneWindowReader``) in
``INFERENCE_IO``.
"""
from interlace.domains.remote_sensing.data.scene_reader import SceneWindowReader

from .geotiff_map_writer import ClassMapCogWriter, GeoTiffMapWriter, write_class_map_cog
from .map_preview import save_map_preview, true_colour
from .segmentation_metric import (ChangeF1, SegmentationMetric, confusion_matrix,
                                  segmentation_scores)
from .sliding_window_mosaic import SlidingWindowMosaic, cosine_ramp

__all__ = ["SceneWindowReader", "ClassMapCogWriter", "GeoTiffMapWriter", "write_class_map_cog",
           "save_map_preview", "true_colour", "ChangeF1", "SegmentationMetric",
           "confusion_matrix", "segmentation_scores", "SlidingWindowMosaic", "cosine_ramp"]
