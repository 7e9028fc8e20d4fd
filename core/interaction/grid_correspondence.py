"""Correspondence between two co-registered rasters (e.g. SAR and optical): an affine map
between their pixel grids.

Pixel coordinates are continuous, GDAL / rasterio style: pixel (i, j) (row i, column j)
covers [j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5) and the normalised
coordinate of x is x / W (the ``streams`` convention). The affine relates the *level-0*
grids of the two streams; coarser levels are assumed to cover the same extent as level 0
(a level-l pixel centre is mapped to level-0 coordinates by the size ratio).

Both directions sample the other stream's *first* (finest) level only: it holds the most
spatial detail, the coarser levels are reached through intra-modal attention, and one
level keeps the key count per query fixed (``window ** 2``).

Samples where either stream is absent (``present`` False) give no pairs.
"""
from __future__ import annotations

import operator
from typing import Optional, Sequence

import torch
from torch import Tensor

from interlace.core.engine.registry import TASK_UTILS

from .correspondence import Correspondence, Footprint
from .correspondence_utils import both_present, inside_unit, require_maps, sample_maps
from .streams import Gathered, StreamFeatures

__all__ = ["GridCorrespondence"]


def _affine_to_tensor(transform) -> Tensor:
    """An ``affine.Affine`` (or any 6- or 9-sequence a, b, c, d, e, f[, 0, 0, 1]) as a
    (3, 3) float64 matrix acting on (col, row, 1)."""
    vals = [float(x) for x in tuple(transform)]
    if len(vals) == 6:
        vals += [0.0, 0.0, 1.0]
    if len(vals) != 9:
        raise ValueError(f"expected an affine transform with 6 or 9 values, got {len(vals)}")
    return torch.tensor(vals, dtype=torch.float64).view(3, 3)


@TASK_UTILS.register_module()
class GridCorrespondence(Correspondence):
    """Two co-registered rasters related by an affine map of their level-0 pixel grids.

    Args:
        a_to_b: (3, 3) or (B, 3, 3): A's level-0 pixel (col, row, 1) -> B's level-0 pixel
            (continuous coordinates, see the module docstring).
        window: K = window^2 samples per query, on a window x window lattice in
            one-pixel steps of the *sampled* stream's level 0, centred on the
            corresponding position; 1 = one bilinear sample at the point.
        a_shape: (H, W) of stream A's level 0. Only :meth:`gather_footprint` needs it
            (footprints are normalised on A's map, whose size it is not given); if None,
            the shape seen by the last ``gather_*`` call is used.
    """

    def __init__(self, a_to_b: Tensor, window: int = 1,
                 a_shape: Optional[Sequence[int]] = None) -> None:
        mat = torch.as_tensor(a_to_b, dtype=torch.float64)
        if mat.dim() not in (2, 3) or mat.shape[-2:] != (3, 3):
            raise ValueError(f"a_to_b must be (3, 3) or (B, 3, 3), got {tuple(mat.shape)}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.a_to_b = mat
        # float64 inverse: round trips between 10 m and 20 m grids stay exact to ~1e-9 px.
        self.b_to_a = torch.linalg.inv(mat)
        self.window = int(window)
        self.a_shape = tuple(int(s) for s in a_shape) if a_shape is not None else None
        self._last_a_shape: Optional[tuple[int, int]] = None

    @classmethod
    def from_transforms(cls, transform_a, transform_b, stride_a: int = 1, stride_b: int = 1,
                        **kwargs) -> "GridCorrespondence":
        """Build from the rasters' own geotransforms (pixel -> CRS).

        Args:
            transform_a, transform_b: ``affine.Affine`` (``rasterio`` dataset ``.transform``)
                of each raster, both in the same CRS; or per-sample sequences of them (a
                single one is shared by all samples).
            stride_a, stride_b: raster pixels per level-0 feature pixel of each stream
                (e.g. 4 when level 0 is a stride-4 feature map of the raster).
            **kwargs: passed to the constructor (``window``, ``a_shape``).

        Returns:
            a :class:`GridCorrespondence` with ``a_to_b = ~(T_b @ S_b) @ (T_a @ S_a)``,
            S = scale by the stride.
        """
        from affine import Affine

        # affine >= 3 composes with `@` (and deprecates `*`); older releases only have `*`.
        compose = operator.matmul if hasattr(Affine, "__matmul__") else operator.mul

        def one(ta, tb) -> Tensor:
            fa = compose(ta, Affine.scale(stride_a))
            fb = compose(tb, Affine.scale(stride_b))
            return _affine_to_tensor(compose(~fb, fa))

        single_a, single_b = isinstance(transform_a, Affine), isinstance(transform_b, Affine)
        if single_a and single_b:
            return cls(one(transform_a, transform_b), **kwargs)
        list_a = [transform_a] if single_a else list(transform_a)
        list_b = [transform_b] if single_b else list(transform_b)
        n = max(len(list_a), len(list_b))
        list_a = list_a * n if len(list_a) == 1 else list_a
        list_b = list_b * n if len(list_b) == 1 else list_b
        if len(list_a) != len(list_b):
            raise ValueError(f"{len(list_a)} transforms for A but {len(list_b)} for B")
        return cls(torch.stack([one(ta, tb) for ta, tb in zip(list_a, list_b)]), **kwargs)

    # --- helpers -----------------------------------------------------------------------
    @staticmethod
    def _offsets(window: int, like: Tensor) -> Tensor:
        """(K, 2) pixel offsets of a window x window lattice, centred on 0."""
        steps = torch.arange(window, dtype=like.dtype, device=like.device)
        steps = steps - (window - 1) / 2.0
        oy, ox = torch.meshgrid(steps, steps, indexing="ij")
        return torch.stack([ox, oy], -1).reshape(-1, 2)

    @staticmethod
    def _apply(mat: Tensor, pixels: Tensor) -> Tensor:
        """mat (B, 3, 3) applied to pixels (B, M, 2) -> (B, M, 2)."""
        homo = torch.cat([pixels, torch.ones_like(pixels[..., :1])], -1).to(mat.dtype)
        out = torch.einsum("bij,bmj->bmi", mat, homo)
        return out[..., :2] / out[..., 2:3]

    def _matrix(self, mat: Tensor, batch_size: int, device: torch.device) -> Tensor:
        mat = mat.to(device)
        if mat.dim() == 2:
            return mat.expand(batch_size, 3, 3)
        if mat.shape[0] != batch_size:
            raise ValueError(f"affine given for {mat.shape[0]} samples, batch has {batch_size}")
        return mat

    def _sample(self, query_pixels: Tensor, mat: Tensor, key: StreamFeatures,
                present: Tensor, num_queries: int, window: int) -> Gathered:
        """Map query level-0 pixels (B, N, 2) through `mat` into the key's level 0 and
        sample a window there; pairs where the sample lies inside the key map."""
        bsz = query_pixels.shape[0]
        h_k, w_k = key.spatial_shapes[0]
        centre = self._apply(self._matrix(mat, bsz, key.device), query_pixels.double())
        samples = centre.unsqueeze(2) + self._offsets(window, centre)        # (B, N, K, 2)
        uv = (samples / samples.new_tensor([w_k, h_k])).float()
        valid = inside_unit(uv) & present.view(bsz, 1, 1)
        k = uv.shape[2]
        sampled = sample_maps(key.levels[0], uv.reshape(bsz, -1, 2))          # (B, N*K, C)
        flat_valid = valid.reshape(bsz, -1)
        si, mi = flat_valid.nonzero(as_tuple=True)
        return Gathered(values=sampled[si, mi], query_index=si * num_queries + mi // k,
                        num_queries_per_sample=num_queries, batch_size=bsz,
                        key_position=uv.reshape(bsz, -1, 2)[si, mi])

    def _check(self, a: StreamFeatures, b: StreamFeatures) -> None:
        require_maps(a, "stream A", num_views=1)
        require_maps(b, "stream B", num_views=1)
        self._last_a_shape = a.spatial_shapes[0]

    @staticmethod
    def _level0_pixels(stream: StreamFeatures) -> Tensor:
        """(N, 2) level-0 pixel coordinates of every query's centre (flatten order)."""
        h0, w0 = stream.spatial_shapes[0]
        return stream.reference_points() * stream.reference_points().new_tensor([w0, h0])

    # --- correspondence ----------------------------------------------------------------
    def gather_b_for_a(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """B's level-0 features at each A query's corresponding position (every level of
        A), window^2 samples per query, pairs only where the sample lies inside B.

        Returns:
            :class:`Gathered`, values (P, C_b), key_position (P, 2) normalised (x, y) in B.
        """
        self._check(a, b)
        pix = self._level0_pixels(a).expand(a.batch_size, -1, 2)
        return self._sample(pix, self.a_to_b, b, both_present(a, b), a.num_queries, self.window)

    def gather_a_for_b(self, a: StreamFeatures, b: StreamFeatures) -> Gathered:
        """A's level-0 features at each B query's position through the inverse affine.

        Returns:
            :class:`Gathered`, values (P, C_a), key_position (P, 2) normalised (x, y) in A.
        """
        self._check(a, b)
        pix = self._level0_pixels(b).expand(b.batch_size, -1, 2)
        return self._sample(pix, self.b_to_a, a, both_present(a, b), b.num_queries, self.window)

    def gather_footprint(self, footprint: Footprint, b: StreamFeatures,
                         grid_size: int = 7) -> Gathered:
        """B's level-0 features at grid_size x grid_size bin centres of each footprint.

        The footprint is a rectangle in A's normalised coordinates (centre, size along /
        across the heading, yaw); its sample points are mapped through the affine into
        B (the rectangle becomes a parallelogram when the grids differ in rotation or
        aspect). Samples outside B give no pair.

        Returns:
            :class:`Gathered`, values (P, C_b), key_position (P, 2) normalised (x, y) in B.
        """
        require_maps(b, "stream B", num_views=1)
        shape = self.a_shape or self._last_a_shape
        if shape is None:
            raise ValueError("GridCorrespondence.gather_footprint needs stream A's level-0 "
                             "shape: pass a_shape= or call gather_b_for_a / gather_a_for_b first")
        h_a, w_a = shape
        g, bsz, q = int(grid_size), footprint.batch_size, footprint.num_queries
        t = (torch.arange(g, device=b.device, dtype=torch.float32) + 0.5) / g - 0.5
        ly, lx = torch.meshgrid(t, t, indexing="ij")
        local = torch.stack([lx, ly], -1).reshape(-1, 2)                      # (G*G, 2)
        local = local * footprint.size.to(b.device).unsqueeze(-2)              # (B, Q, G*G, 2)
        yaw = footprint.yaw.to(b.device).unsqueeze(-1)
        c, s = torch.cos(yaw), torch.sin(yaw)
        rot = torch.stack([local[..., 0] * c - local[..., 1] * s,
                           local[..., 0] * s + local[..., 1] * c], -1)
        uv_a = footprint.center.to(b.device).unsqueeze(-2) + rot
        pix = (uv_a * uv_a.new_tensor([w_a, h_a])).reshape(bsz, -1, 2)
        present = b.present_mask()
        # One bilinear sample per bin (no window): the bins already tile the footprint.
        gathered = self._sample(pix, self.a_to_b, b, present, q * g * g, window=1)
        # _sample indexed the samples as queries; fold them back onto their footprint.
        gathered.query_index = (gathered.query_index // (q * g * g)) * q \
            + (gathered.query_index % (q * g * g)) // (g * g)
        gathered.num_queries_per_sample = q
        return gathered

    def ray_layout(self, a: StreamFeatures, b: StreamFeatures) -> None:
        """Rasters have no rays: spread through a pooled summary."""
        return None

