"""Benchmark cases for `interlace.core.ops.voxelize` (see `interlace.benchmarks.common`).

``voxelize_hard``: nuScenes-scale hard voxelisation (300k points, 0.075 x 0.075 x 0.2 m
voxels over [-54, -54, -5, 54, 54, 3], 10 points per voxel, 120k voxels) against the
naive formulation it replaces, a Python loop over points filling a dict.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from interlace.core.ops.voxelize import voxelize_hard

from .common import BenchCase, Prepared

VOXEL_SIZE = (0.075, 0.075, 0.2)
PC_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
MAX_POINTS = 10
SIZES = {"full": (300_000, 120_000), "smoke": (2_000, 500)}  # (points, max voxels)


def make_cloud(n: int, seed: int = 0) -> torch.Tensor:
    """A nuScenes-like sweep: (n, 5) float32 x, y, z, intensity, time.

    Ranges uniform in [0, 60) m (so about 10% fall outside the 54 m square), denser near
    the sensor as a real sweep; z in [-5.5, 3.5) so some points leave the z range.
    """
    g = np.random.default_rng(seed)
    r = 60.0 * np.sqrt(g.random(n)) * g.random(n) ** 0.5
    theta = g.random(n) * 2 * math.pi
    pts = np.stack([r * np.cos(theta), r * np.sin(theta), g.uniform(-5.5, 3.5, n),
                    g.random(n), g.random(n) * 0.5], axis=1)
    return torch.from_numpy(pts.astype(np.float32))


def python_loop_voxelize(points: np.ndarray, voxel_size=VOXEL_SIZE, pc_range=PC_RANGE,
                         max_points: int = MAX_POINTS, max_voxels: int = 120_000):
    """The naive formulation: one pass over points in input order with a dict.

    Returns voxels (M, P, C), coords (M, 3) int32 (z, y, x), num_points (M,) int32.
    """
    lo = np.asarray(pc_range[:3], np.float32)
    hi = np.asarray(pc_range[3:], np.float32)
    size = np.asarray(voxel_size, np.float32)
    grid = np.round((hi - lo) / size).astype(np.int64)
    index: dict = {}
    slots: list = []
    for p in points:
        xyz = p[:3]
        if not np.isfinite(xyz).all() or (xyz < lo).any() or (xyz >= hi).any():
            continue
        c = np.floor((xyz - lo) / size).astype(np.int64)
        if (c < 0).any() or (c >= grid).any():
            continue
        key = (int(c[2]), int(c[1]), int(c[0]))
        v = index.get(key)
        if v is None:
            if len(slots) >= max_voxels:
                continue
            v = index[key] = len(slots)
            slots.append([])
        if len(slots[v]) < max_points:
            slots[v].append(p)
    voxels = np.zeros((len(slots), max_points, points.shape[1]), np.float32)
    for v, rows in enumerate(slots):
        voxels[v, :len(rows)] = rows
    coords = np.asarray(list(index), np.int32).reshape(-1, 3)
    return voxels, coords, np.asarray([len(s) for s in slots], np.int32)


def _setup(scale: str, backend: str) -> Prepared:
    n, max_voxels = SIZES[scale]
    points = make_cloud(n)
    points_np = points.numpy()

    def ours():
        return voxelize_hard(points, VOXEL_SIZE, PC_RANGE, MAX_POINTS, max_voxels,
                             backend=backend)

    def reference():
        return python_loop_voxelize(points_np, max_voxels=max_voxels)

    return Prepared(ours=ours, reference=reference, reference_name="python loop",
                    notes=f"{n} points x 5 features, {MAX_POINTS} points/voxel, "
                          f"{max_voxels} max voxels, backend={backend}")


CASES: list[BenchCase] = [
    BenchCase(
        name="voxelize_hard",
        description="hard voxelisation of 300k points, 0.075x0.075x0.2 m voxels, "
                    "nuScenes range, 10 points/voxel, 120k voxels (pure-torch sort path)",
        setup=lambda scale: _setup(scale, "torch"),
        tags=["ops", "voxelize"],
    ),
]
