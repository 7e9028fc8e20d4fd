"""Point-cloud voxelisation: hard (fixed points per voxel), dynamic (every point), means.

Conventions, as in mmdet3d and spconv:

* ``voxel_size`` is ``(vx, vy, vz)`` and ``point_cloud_range`` is
  ``[x0, y0, z0, x1, y1, z1]``; the first three point columns are x, y, z.
* Voxel coordinates are returned in **(z, y, x)** order, int32, the layout
  ``spconv.SparseConvTensor`` indices and mmdet3d's middle encoders expect.
* A point is kept when its coordinates are finite, ``x0 <= x < x1`` (same for y, z) and
  its cell ``floor((x - x0) / vx)`` lies in ``[0, grid_size)``. The cell test is mmcv's
  and spconv's rule; the explicit range test only differs from it when the range is not
  a whole number of voxels or at float rounding on the upper face, and keeps a point at
  ``x >= x1`` from landing in a partial last cell.
* Cell indices are computed in the points' dtype with ``(p - lo) / size``, the same
  float operations as mmcv's and spconv's CPU kernels, so boundary points fall in the
  same cells.

Everything here is plain PyTorch (sort / scatter, no Python loop over points), so it
runs on CPU and GPU tensors alike and is deterministic. spconv's CPU ``PointToVoxel``
(``voxelize_hard(backend="spconv")``) gives the identical hard-voxelisation result (the
tests check it) but is not the default: it allocates a dense int32 hash over the whole
grid on construction (1440 x 1440 x 40 cells = 332 MB for nuScenes), which made it about
3x slower than the sort path on 300k points (~0.18 s vs ~0.06 s, one thread), and
caching it would pin that memory.
"""
from __future__ import annotations

import warnings
from typing import Sequence, Union

import torch
from torch import nn

from interlace.core.engine.registry import MODELS

__all__ = [
    "grid_size",
    "voxelize_hard",
    "voxelize_dynamic",
    "mean_voxel_features",
    "dynamic_scatter_mean",
    "Voxelization",
]

Floats = Union[Sequence[float], torch.Tensor]


def _params(voxel_size: Floats, point_cloud_range: Floats, dtype: torch.dtype,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxel size, range corners and grid size as tensors.

    Returns:
        size (3,), lo (3,), hi (3,) in ``dtype`` and grid (3,) int64, all xyz order.
    """
    size = torch.as_tensor(voxel_size, dtype=dtype, device=device).reshape(3)
    rng = torch.as_tensor(point_cloud_range, dtype=dtype, device=device).reshape(6)
    grid = torch.as_tensor(grid_size(voxel_size, point_cloud_range), device=device)
    return size, rng[:3], rng[3:], grid


def grid_size(voxel_size: Floats, point_cloud_range: Floats) -> tuple[int, int, int]:
    """Number of cells along x, y and z.

    Computed like mmcv/spconv, ``round((x1 - x0) / vx)`` in float32, so e.g. 0.075 m
    voxels over ``[-54, -54, -5, 54, 54, 3]`` give (1440, 1440, 40) although
    ``108 / 0.075`` is 1439.99994 in float32.

    Args:
        voxel_size: (3,) voxel edge lengths (vx, vy, vz).
        point_cloud_range: (6,) ``[x0, y0, z0, x1, y1, z1]``.

    Returns:
        (X, Y, Z) cell counts.
    """
    size = torch.as_tensor(voxel_size, dtype=torch.float32).reshape(3).cpu()
    rng = torch.as_tensor(point_cloud_range, dtype=torch.float32).reshape(6).cpu()
    cells = torch.round((rng[3:] - rng[:3]) / size).long().tolist()
    if min(cells) <= 0:
        raise ValueError(f"empty voxel grid {cells} for voxel_size={size.tolist()}, "
                         f"point_cloud_range={rng.tolist()}")
    return cells[0], cells[1], cells[2]


def _cells(points: torch.Tensor, voxel_size: Floats,
           point_cloud_range: Floats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell of every point and which points are kept; warns once about non-finite points.

    Args:
        points: (N, C) float, C >= 3, columns x, y, z first.

    Returns:
        cells (N, 3) int64 xyz cell indices (arbitrary where not kept), keep (N,) bool,
        grid (3,) int64 xyz cell counts.
    """
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, C>=3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"points must be floating point, got {points.dtype}")
    size, lo, hi, grid = _params(voxel_size, point_cloud_range, points.dtype, points.device)
    xyz = points[:, :3]
    finite = torch.isfinite(xyz).all(dim=1)
    n_bad = int((~finite).sum())
    if n_bad:
        # One warning per call (not per point): a corrupt sweep should be visible in the
        # log without flooding it.
        warnings.warn(f"voxelisation dropped {n_bad} of {points.shape[0]} points with "
                      f"NaN/inf coordinates", RuntimeWarning, stacklevel=3)
        # Replace them so floor/long below never sees NaN (its int cast is undefined).
        xyz = torch.where(finite.unsqueeze(1), xyz, lo)
    cells = torch.floor((xyz - lo) / size).long()
    keep = (finite & (xyz >= lo).all(dim=1) & (xyz < hi).all(dim=1)
            & (cells >= 0).all(dim=1) & (cells < grid).all(dim=1))
    return cells, keep, grid


Hard = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # voxels, coords, num_points


def _empty_hard(points: torch.Tensor, max_points: int) -> Hard:
    dev = points.device
    return (points.new_zeros((0, max_points, points.shape[1])),
            torch.zeros((0, 3), dtype=torch.int32, device=dev),
            torch.zeros((0,), dtype=torch.int32, device=dev))


def _hard_torch(points: torch.Tensor, cells: torch.Tensor, keep: torch.Tensor,
                grid: torch.Tensor, max_points: int, max_voxels: int) -> Hard:
    """Sort-based hard voxelisation with mmcv's first-appearance semantics."""
    idx = keep.nonzero().squeeze(1)  # kept points, still in input order
    k = idx.numel()
    if k == 0 or max_voxels <= 0:
        return _empty_hard(points, max_points)
    cell = cells[idx]
    key = (cell[:, 2] * grid[1] + cell[:, 1]) * grid[0] + cell[:, 0]
    # A stable sort groups points by voxel and keeps input order inside each group, so a
    # group's first element is the voxel's first point and the offset from the group
    # start is the point's slot in the voxel.
    sorted_key, order = torch.sort(key, stable=True)
    new_group = torch.ones(k, dtype=torch.bool, device=points.device)
    new_group[1:] = sorted_key[1:] != sorted_key[:-1]
    starts = new_group.nonzero().squeeze(1)                      # (U,) in sorted order
    group = torch.cumsum(new_group, 0) - 1                       # (K,) group of sorted pt
    counts = torch.diff(starts, append=starts.new_tensor([k]))   # (U,)
    first = order[starts]                                        # (U,) first point
    # Voxels are numbered by first appearance (mmcv/spconv order); first is unique.
    by_appearance = torch.argsort(first)                         # voxel id -> group
    rank = torch.empty_like(by_appearance)
    rank[by_appearance] = torch.arange(by_appearance.numel(), device=points.device)
    m = min(by_appearance.numel(), max_voxels)
    slot = torch.arange(k, device=points.device) - starts[group]
    vid = rank[group]
    sel = (vid < m) & (slot < max_points)
    voxels = points.new_zeros((m, max_points, points.shape[1]))
    voxels[vid[sel], slot[sel]] = points[idx[order[sel]]]
    kept_groups = by_appearance[:m]
    num_points = counts[kept_groups].clamp(max=max_points).to(torch.int32)
    coords = cell[first[kept_groups]].flip(1).to(torch.int32)   # xyz -> zyx
    return voxels, coords, num_points


def _hard_spconv(points: torch.Tensor, voxel_size: Floats, point_cloud_range: Floats,
                 max_points: int, max_voxels: int) -> Hard:
    """spconv's CPU PointToVoxel on already-filtered float32 points (same semantics)."""
    # Through the project's spconv entry point, so its CPU patches are in place.
    from interlace.core.ops.sparse_conv import SPCONV_AVAILABLE
    if not SPCONV_AVAILABLE:
        raise RuntimeError("backend='spconv' needs spconv installed")
    from spconv.pytorch.utils import PointToVoxel
    if points.shape[0] == 0 or max_voxels <= 0:
        return _empty_hard(points, max_points)
    gen = PointToVoxel(vsize_xyz=[float(v) for v in voxel_size],
                       coors_range_xyz=[float(v) for v in point_cloud_range],
                       num_point_features=points.shape[1], max_num_voxels=max_voxels,
                       max_num_points_per_voxel=max_points, device=torch.device("cpu"))
    voxels, coords, num_points = gen(points.contiguous())
    return voxels, coords, num_points


def voxelize_hard(points: torch.Tensor, voxel_size: Floats, point_cloud_range: Floats,
                  max_points_per_voxel: int, max_voxels: int,
                  backend: str = "torch") -> Hard:
    """Hard voxelisation with mmcv's semantics.

    Voxels are numbered by the input position of their first point; each keeps its first
    ``max_points_per_voxel`` points in input order; only the first ``max_voxels`` voxels
    are kept (points of later voxels are dropped). Out-of-range and non-finite points are
    dropped (the latter with one ``RuntimeWarning`` giving the count).

    Args:
        points: (N, C) float, columns x, y, z first; CPU or GPU.
        voxel_size: (3,) (vx, vy, vz).
        point_cloud_range: (6,) ``[x0, y0, z0, x1, y1, z1]``.
        max_points_per_voxel: P, points stored per voxel.
        max_voxels: upper bound on M.
        backend: ``"torch"`` (default, any device/dtype) or ``"spconv"`` (spconv's CPU
            ``PointToVoxel``, float32 CPU points only; same result, but it allocates a
            dense int32 hash over the whole grid on every call).

    Returns:
        voxels (M, P, C) zero-padded, coords (M, 3) int32 (z, y, x), num_points (M,) int32.
    """
    if max_points_per_voxel <= 0:
        raise ValueError("max_points_per_voxel must be positive; use voxelize_dynamic")
    cells, keep, grid = _cells(points, voxel_size, point_cloud_range)
    if backend == "torch":
        return _hard_torch(points, cells, keep, grid, max_points_per_voxel, max_voxels)
    if backend == "spconv":
        if points.device.type != "cpu" or points.dtype != torch.float32:
            raise ValueError("backend='spconv' takes float32 CPU points")
        # Filter here so both backends share one keep rule; spconv computes the same
        # cells for the survivors, and input order (hence voxel order) is preserved.
        return _hard_spconv(points[keep], voxel_size, point_cloud_range,
                            max_points_per_voxel, max_voxels)
    raise ValueError(f"unknown backend {backend!r}: expected 'torch' or 'spconv'")


def mean_voxel_features(voxels: torch.Tensor, num_points: torch.Tensor) -> torch.Tensor:
    """Mean of the real points of each voxel (mmdet3d's HardSimpleVFE).

    Padding slots are masked out, so it is correct whatever they contain.

    Args:
        voxels: (M, P, C) points per voxel.
        num_points: (M,) int, number of real points per voxel (first slots).

    Returns:
        (M, C) per-voxel mean; zero for a voxel with no points.
    """
    slots = torch.arange(voxels.shape[1], device=voxels.device)
    mask = (slots.unsqueeze(0) < num_points.unsqueeze(1)).to(voxels.dtype)  # (M, P)
    total = (voxels * mask.unsqueeze(2)).sum(dim=1)
    return total / num_points.clamp(min=1).to(voxels.dtype).unsqueeze(1)


def voxelize_dynamic(points: torch.Tensor, voxel_size: Floats,
                     point_cloud_range: Floats) -> torch.Tensor:
    """Dynamic voxelisation: the voxel of every point, nothing dropped for capacity.

    Args:
        points: (N, C) float, columns x, y, z first.
        voxel_size: (3,) (vx, vy, vz).
        point_cloud_range: (6,) ``[x0, y0, z0, x1, y1, z1]``.

    Returns:
        coords (N, 3) int32 (z, y, x); rows of out-of-range or non-finite points are -1.
    """
    cells, keep, _ = _cells(points, voxel_size, point_cloud_range)
    coords = cells.flip(1).to(torch.int32)
    coords[~keep] = -1
    return coords


def dynamic_scatter_mean(features: torch.Tensor,
                         coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group points by voxel and average their features (mmcv's DynamicScatter 'mean').

    Args:
        features: (N, C) float per-point features.
        coords: (N, D) int per-point voxel coordinates, e.g. (z, y, x) from
            :func:`voxelize_dynamic` or (batch, z, y, x); rows with a negative entry
            are dropped.

    Returns:
        voxel_coords (M, D) int32 sorted lexicographically (as ``torch.unique(dim=0)``),
        point2voxel (N,) int64 index into them (-1 for dropped points),
        voxel_features (M, C) mean of each voxel's points.
    """
    n, d = coords.shape
    valid = (coords >= 0).all(dim=1)
    point2voxel = torch.full((n,), -1, dtype=torch.long, device=coords.device)
    if not bool(valid.any()):
        return (torch.zeros((0, d), dtype=torch.int32, device=coords.device), point2voxel,
                features.new_zeros((0, features.shape[1])))
    c = coords[valid].long()
    # Mixed-radix key: one 1-D unique instead of the much slower unique(dim=0); the
    # key order is the lexicographic order of the rows.
    radix = (c.max(dim=0).values + 1).tolist()
    total = 1
    for r in radix:
        total *= r
    if total >= 2 ** 63:
        raise OverflowError(f"voxel coordinates span {radix}: too large for an int64 key")
    key = torch.zeros_like(c[:, 0])
    for j in range(d):
        key = key * radix[j] + c[:, j]
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    m = counts.numel()
    voxel_coords = torch.empty((m, d), dtype=torch.int32, device=coords.device)
    voxel_coords[inverse] = c.to(torch.int32)  # all writers of a row write the same value
    sums = features.new_zeros((m, features.shape[1])).index_add_(0, inverse, features[valid])
    point2voxel[valid] = inverse
    return voxel_coords, point2voxel, sums / counts.to(features.dtype).unsqueeze(1)


@MODELS.register_module()
class Voxelization(nn.Module):
    """Voxelisation layer with mmdet3d's ``Voxelization`` interface.

    Args:
        voxel_size: (3,) (vx, vy, vz).
        point_cloud_range: (6,) ``[x0, y0, z0, x1, y1, z1]``.
        max_num_points: points per voxel; -1 selects dynamic voxelisation.
        max_voxels: ``(train, test)`` caps on the voxel count, or one int for both.
        deterministic: accepted for config compatibility with mmcv, where it picks a
            slower deterministic CUDA kernel; this implementation is always
            deterministic, so ``False`` (allowed nondeterminism) changes nothing.
    """

    def __init__(self, voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                 max_num_points: int, max_voxels: Union[int, Sequence[int]] = 20000,
                 deterministic: bool = True) -> None:
        super().__init__()
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.max_num_points = int(max_num_points)
        if isinstance(max_voxels, int):
            max_voxels = (max_voxels, max_voxels)
        self.max_voxels = (int(max_voxels[0]), int(max_voxels[1]))
        self.deterministic = deterministic
        self.grid_size = grid_size(self.voxel_size, self.point_cloud_range)  # (X, Y, Z)

    def forward(self, points: torch.Tensor) -> Union[torch.Tensor, Hard]:
        """Voxelise one point cloud.

        Args:
            points: (N, C) float, columns x, y, z first.

        Returns:
            Hard mode: voxels (M, P, C), coords (M, 3) int32 (z, y, x), num_points (M,)
            int32, with M <= max_voxels[0] in training and max_voxels[1] in eval.
            Dynamic mode: coords (N, 3) int32 (z, y, x), -1 rows for dropped points.
        """
        if self.max_num_points == -1:
            return voxelize_dynamic(points, self.voxel_size, self.point_cloud_range)
        cap = self.max_voxels[0] if self.training else self.max_voxels[1]
        return voxelize_hard(points, self.voxel_size, self.point_cloud_range,
                             self.max_num_points, cap)

    def extra_repr(self) -> str:
        return (f"voxel_size={self.voxel_size}, point_cloud_range={self.point_cloud_range}, "
                f"max_num_points={self.max_num_points}, max_voxels={self.max_voxels}, "
                f"deterministic={self.deterministic}")
