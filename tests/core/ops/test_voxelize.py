"""Voxelisation against a slow pure-Python reference (a dict filled in input order)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from interlace.core.ops.sparse_conv import SPCONV_AVAILABLE
from interlace.core.ops.voxelize import (Voxelization, dynamic_scatter_mean, grid_size,
                                         mean_voxel_features, voxelize_dynamic, voxelize_hard)

# A small grid so that voxels hold many points: 8 x 8 x 4 cells of 0.5 m.
VOXEL = (0.5, 0.5, 0.5)
RANGE = (0.0, 0.0, 0.0, 4.0, 4.0, 2.0)
N_BAD = 7  # NaN/inf points planted in the cloud


def _cell(xyz: np.ndarray, dtype) -> tuple:
    """(z, y, x) cell of one point, or None if it is dropped: the mmcv rule, same dtype."""
    xyz = xyz.astype(dtype)
    lo, hi = np.asarray(RANGE[:3], dtype), np.asarray(RANGE[3:], dtype)
    size = np.asarray(VOXEL, dtype)
    if not np.isfinite(xyz).all() or (xyz < lo).any() or (xyz >= hi).any():
        return None
    c = np.floor((xyz - lo) / size).astype(np.int64)
    grid = np.round((np.asarray(RANGE[3:], np.float32) - np.asarray(RANGE[:3], np.float32))
                    / np.asarray(VOXEL, np.float32)).astype(np.int64)
    if (c < 0).any() or (c >= grid).any():
        return None
    return int(c[2]), int(c[1]), int(c[0])


def reference_hard(points: np.ndarray, max_points: int, max_voxels: int):
    """voxels (M, P, C), coords (M, 3) zyx, num_points (M,), real counts (M,), one loop."""
    index: dict = {}
    rows: list = []
    for p in points:
        key = _cell(p[:3], points.dtype)
        if key is None:
            continue
        if key not in index:
            if len(rows) >= max_voxels:
                continue
            index[key] = len(rows)
            rows.append([])
        rows[index[key]].append(p)
    voxels = np.zeros((len(rows), max_points, points.shape[1]), points.dtype)
    for v, r in enumerate(rows):
        voxels[v, :min(len(r), max_points)] = r[:max_points]
    counts = np.asarray([len(r) for r in rows])
    return voxels, np.asarray(list(index), np.int32), np.minimum(counts, max_points), counts


def make_cloud(n: int = 3000, dtype=np.float32, seed: int = 0) -> np.ndarray:
    """(n, 4) points over a box a bit larger than RANGE, with exact edge cases planted."""
    g = np.random.default_rng(seed)
    pts = np.concatenate([g.uniform(-0.5, 4.5, (n, 2)), g.uniform(-0.3, 2.3, (n, 1)),
                          g.random((n, 1))], axis=1).astype(dtype)
    pts[:200, :3] = np.round(pts[:200, :3] * 2) / 2  # on cell faces: lower face is inside
    pts[200, :3] = (0.0, 0.0, 0.0)    # the range's lower corner: kept
    pts[201, :3] = (4.0, 1.0, 1.0)    # x == x1: dropped
    pts[202, :3] = (1.0, 1.0, 2.0)    # z == z1: dropped
    bad = g.choice(np.arange(300, n), N_BAD, replace=False)
    pts[bad[:4], g.integers(0, 3, 4)] = np.nan
    pts[bad[4:], 0] = [np.inf, -np.inf, np.inf]
    pts[bad[4:], 3] = 0.0
    return pts


def _hard(points: np.ndarray, max_points: int, max_voxels: int, **kw):
    with pytest.warns(RuntimeWarning, match=f"dropped {N_BAD} of {len(points)} points"):
        out = voxelize_hard(torch.from_numpy(points), VOXEL, RANGE, max_points, max_voxels, **kw)
    return [t.numpy() for t in out]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hard_voxelize_matches_python_reference_with_both_truncations(dtype):
    pts = make_cloud(dtype=dtype)
    ref_voxels, ref_coords, ref_num, ref_counts = reference_hard(pts, 5, 200)
    # Both caps bite: more occupied cells than 200, and voxels with more than 5 points.
    assert len({_cell(p[:3], dtype) for p in pts} - {None}) > 200
    assert len(ref_coords) == 200 and ref_counts.max() > 5

    voxels, coords, num = _hard(pts, 5, 200)
    assert voxels.dtype == dtype and coords.dtype == np.int32 and num.dtype == np.int32
    np.testing.assert_array_equal(coords, ref_coords)
    np.testing.assert_array_equal(num, ref_num)
    np.testing.assert_array_equal(voxels, ref_voxels)  # same points, same slots, zero pad
    # The lower corner point is the first point of the voxel (0, 0, 0).
    corner = np.flatnonzero((coords == 0).all(1))
    assert len(corner) == 1 and np.isin(0.0, voxels[corner[0], :, 0])


def test_hard_voxelize_without_caps_keeps_every_valid_point():
    pts = make_cloud()
    voxels, coords, num = _hard(pts, 64, 10_000)
    kept = sum(_cell(p[:3], np.float32) is not None for p in pts)
    assert num.sum() == kept
    assert len(np.unique(coords, axis=0)) == len(coords)  # one voxel per cell


@pytest.mark.skipif(not SPCONV_AVAILABLE, reason="spconv not installed")
def test_spconv_backend_matches_torch_backend():
    pts = make_cloud(seed=1)
    for caps in ((5, 200), (3, 40), (64, 10_000)):
        ours = _hard(pts, *caps, backend="torch")
        theirs = _hard(pts, *caps, backend="spconv")
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


def test_range_end_is_exclusive_even_inside_a_partial_last_cell():
    # 4.3 m / 0.5 m rounds to 9 cells, the last one reaching 4.5 m: mmcv's cell test alone
    # would keep x = 4.4; the range [x0, x1) drops it.
    rng = (0.0, 0.0, 0.0, 4.3, 4.0, 2.0)
    assert grid_size(VOXEL, rng) == (9, 8, 4)
    pts = torch.tensor([[4.25, 1.0, 1.0], [4.3, 1.0, 1.0], [4.4, 1.0, 1.0], [0.1, 0.1, 0.1]])
    assert voxelize_dynamic(pts, VOXEL, rng).tolist() == [[2, 2, 8], [-1] * 3, [-1] * 3, [0, 0, 0]]
    _, coords, num = voxelize_hard(pts, VOXEL, rng, 4, 10)
    assert coords.tolist() == [[2, 2, 8], [0, 0, 0]] and num.tolist() == [1, 1]


def test_hard_voxelize_of_an_all_dropped_cloud_is_empty():
    pts = torch.full((10, 4), 100.0)
    voxels, coords, num = voxelize_hard(pts, VOXEL, RANGE, 5, 20)
    assert voxels.shape == (0, 5, 4) and coords.shape == (0, 3) and num.shape == (0,)


def test_no_warning_for_a_clean_cloud():
    pts = torch.rand(100, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        voxelize_hard(pts, VOXEL, RANGE, 5, 20)
        voxelize_dynamic(pts, VOXEL, RANGE)


def test_mean_voxel_features_match_numpy_and_ignore_padding():
    pts = make_cloud(dtype=np.float64)
    voxels, _, num, _ = reference_hard(pts, 5, 200)
    expected = np.stack([voxels[v, :n].mean(0) for v, n in enumerate(num)])
    got = mean_voxel_features(torch.from_numpy(voxels), torch.from_numpy(num))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    padded = torch.from_numpy(voxels).clone()
    padded[torch.arange(5).unsqueeze(0) >= torch.from_numpy(num).unsqueeze(1)] = 99.0
    np.testing.assert_allclose(mean_voxel_features(padded, torch.from_numpy(num)).numpy(),
                               expected, rtol=1e-12)


def test_dynamic_voxelize_coords_match_reference():
    pts = make_cloud()
    with pytest.warns(RuntimeWarning, match=f"dropped {N_BAD} of"):
        coords = voxelize_dynamic(torch.from_numpy(pts), VOXEL, RANGE).numpy()
    expected = np.asarray([_cell(p[:3], np.float32) or (-1, -1, -1) for p in pts], np.int32)
    assert coords.dtype == np.int32
    np.testing.assert_array_equal(coords, expected)


def test_dynamic_scatter_mean_groups_points_by_voxel():
    pts = make_cloud(dtype=np.float64)
    with pytest.warns(RuntimeWarning):
        coords = voxelize_dynamic(torch.from_numpy(pts), VOXEL, RANGE)
    voxel_coords, point2voxel, means = dynamic_scatter_mean(torch.from_numpy(pts), coords)
    groups: dict = {}
    for i, c in enumerate(coords.tolist()):
        if min(c) >= 0:
            groups.setdefault(tuple(c), []).append(i)
    keys = sorted(groups)  # lexicographic (z, y, x)
    np.testing.assert_array_equal(voxel_coords.numpy(), np.asarray(keys, np.int32))
    expected_p2v = np.full(len(pts), -1)
    for v, k in enumerate(keys):
        expected_p2v[groups[k]] = v
    np.testing.assert_array_equal(point2voxel.numpy(), expected_p2v)
    np.testing.assert_allclose(means.numpy(), [pts[groups[k]].mean(0) for k in keys], rtol=1e-12)


def test_dynamic_scatter_mean_accepts_a_batch_column():
    coords = torch.tensor([[1, 0, 0, 2], [0, 0, 0, 2], [1, 0, 0, 2], [0, -1, -1, -1]])
    feats = torch.tensor([[1.0], [5.0], [3.0], [7.0]])
    voxel_coords, p2v, means = dynamic_scatter_mean(feats, coords)
    assert voxel_coords.tolist() == [[0, 0, 0, 2], [1, 0, 0, 2]]
    assert p2v.tolist() == [1, 0, 1, -1]
    assert means.flatten().tolist() == [5.0, 2.0]


def test_voxelization_module_uses_train_then_test_max_voxels():
    from interlace.core.engine.registry import MODELS

    layer = MODELS.build(dict(type="Voxelization", voxel_size=VOXEL, point_cloud_range=RANGE,
                              max_num_points=5, max_voxels=(150, 60)))
    assert isinstance(layer, Voxelization) and layer.grid_size == (8, 8, 4)
    pts = torch.from_numpy(make_cloud())
    pts = pts[torch.isfinite(pts).all(1)]  # no warning to expect
    voxels, coords, _ = layer.train()(pts)
    assert voxels.shape == (150, 5, 4)
    voxels_eval, coords_eval, _ = layer.eval()(pts)
    assert voxels_eval.shape == (60, 5, 4)
    torch.testing.assert_close(coords_eval, coords[:60])  # the same first voxels
    assert Voxelization(VOXEL, RANGE, 5, max_voxels=70)(pts)[0].shape[0] == 70


def test_voxelization_module_in_dynamic_mode_returns_point_coords():
    pts = torch.rand(50, 4) * 4
    layer = Voxelization(VOXEL, RANGE, max_num_points=-1)
    torch.testing.assert_close(layer(pts), voxelize_dynamic(pts, VOXEL, RANGE))



def test_voxelization_accepts_mmcv_nondeterministic_flag_and_stays_deterministic():
    pts = torch.rand(300, 4) * 4
    exact = Voxelization(VOXEL, RANGE, 2, max_voxels=20)(pts)
    relaxed = Voxelization(VOXEL, RANGE, 2, max_voxels=20, deterministic=False)(pts)
    for a, b in zip(exact, relaxed):
        assert torch.equal(a, b)


def test_grid_size_of_nuscenes_settings():
    assert grid_size((0.075, 0.075, 0.2), (-54, -54, -5, 54, 54, 3)) == (1440, 1440, 40)
    assert grid_size(VOXEL, RANGE) == (8, 8, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_hard_voxelize_on_gpu_matches_cpu():
    pts = make_cloud()
    cpu = _hard(pts, 5, 200)
    with pytest.warns(RuntimeWarning):
        gpu = voxelize_hard(torch.from_numpy(pts).cuda(), VOXEL, RANGE, 5, 200)
    for a, b in zip(cpu, gpu):
        np.testing.assert_array_equal(a, b.cpu().numpy())


def test_benchmark_smoke_case_agrees_with_python_loop():
    from interlace.benchmarks.ops_voxelize import CASES

    for case in CASES:
        prepared = case.setup("smoke")
        ours = [t.numpy() for t in prepared.ours()]
        assert ours[0].shape[0] > 0
        for a, b in zip(ours, prepared.reference()):
            np.testing.assert_array_equal(a, b)
