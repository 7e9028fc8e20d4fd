"""How a position of one stream maps to positions of the other: the one thing a domain
tells the interaction core about its pair of sensors (docs/architecture.md, "Correspondences").

A correspondence is built per batch from that batch's geometry (calibration and
augmentation matrices, raster transforms, nothing for tokens) and answers three
questions the encoder and decoder ask:

- :meth:`Correspondence.gather_b_for_a` / :meth:`gather_a_for_b`: for every query of one
  stream, the other stream's features at the corresponding positions (sampling-based
  alignment). Returned as valid (query, key) pairs, see :class:`Gathered`.
- :meth:`Correspondence.gather_footprint`: for decoder queries with a footprint on stream
  A's map, stream B's features inside that footprint (RoIAlign-style samples).
- :meth:`Correspondence.ray_layout`: geometry for global dense spreading along camera
  columns; ``None`` (the default) makes the encoder spread through a pooled summary.

Concrete classes: ``ProjectionCorrespondence`` (points / BEV <-> calibrated views),
``GridCorrespondence`` (co-registered rasters), ``DenseCorrespondence`` (no geometry).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

from torch import Tensor

from .streams import Gathered, StreamFeatures

__all__ = ["Correspondence", "Footprint", "RayLayout"]


@dataclass
class Footprint:
    """Where decoder queries sit on stream A's map (its first level), per query.

    Attributes:
        center: (B, Q, 2) normalised (x, y) in [0, 1] on A's map.
        size: (B, Q, 2) normalised (extent along the heading, extent across) on A's map.
        yaw: (B, Q) rotation of the footprint on A's map, radians, counter-clockwise from
            +x (the map's column axis); zeros for axis-aligned footprints.
        z: optional (B, Q) centre height in metres (projection correspondences).
        height: optional (B, Q) vertical extent in metres (projection correspondences).
    """

    center: Tensor
    size: Tensor
    yaw: Tensor
    z: Optional[Tensor] = None
    height: Optional[Tensor] = None

    @property
    def batch_size(self) -> int:
        return self.center.shape[0]

    @property
    def num_queries(self) -> int:
        return self.center.shape[1]


@dataclass
class RayLayout:
    """Global dense spreading geometry: D samples along the ray of every image column.

    Attributes:
        level: index of stream B's level whose columns are used.
        a_points: (B, V, W, D, 2) normalised (x, y) on stream A's first level of the D depth
            samples along column u (W columns of that level) of view v.
        valid: (B, V, W, D) bool: the sample lies inside A's map and in front of the camera.
    """

    level: int
    a_points: Tensor
    valid: Tensor


class Correspondence(ABC):
    """Maps queries of stream A to stream B and back for one batch (see module docstring)."""

    @abstractmethod
    def gather_b_for_a(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """Stream B's features at the positions corresponding to each query of A.

        Args:
            a: the querying stream; its ``flatten`` order defines the queries.
            b: the stream sampled.

        Returns:
            :class:`Gathered` with ``num_queries_per_sample == a.num_queries``.
        """

    @abstractmethod
    def gather_a_for_b(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """Stream A's features at the positions corresponding to each query of B
        (``num_queries_per_sample == b.num_queries``)."""

    @abstractmethod
    def gather_footprint(self, footprint: Footprint, b: StreamFeatures,
                         grid_size: int = 7) -> Gathered:
        """Stream B's features inside each decoder query's footprint (a grid_size x
        grid_size RoIAlign-style sampling per view that sees it). Queries that no view
        sees get no pairs. ``num_queries_per_sample == footprint.num_queries``."""

    def ray_layout(self, a: StreamFeatures, b: StreamFeatures) -> Optional[RayLayout]:
        """Geometry for column/ray spreading, or None to spread through a pooled summary."""
        return None
