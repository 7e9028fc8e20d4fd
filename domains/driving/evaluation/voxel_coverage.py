"""How much of a LiDAR pipeline's output survives voxelisation, and whether the sweeps
keep their share of it (``tools/analysis_tools/voxel_coverage.py``).

Why: hard voxelisation keeps at most ``max_num_points`` points per voxel and at most
``max_voxels`` voxels, and the points it keeps are the first ones in the cloud. A cap
matched to small voxels drops many points of large ones, and a cloud that is not shuffled
(the key frame comes first) loses its sweep points first. The time lag of the sweeps is
the motion cue of the velocity head, so the sweeps' share of the kept points should be
what it was before voxelisation, and the same in training and at test time.

Counted per split over N samples of the config's pipeline, through the config's own data
preprocessor:

* ``in_range``: points inside the voxel grid (the preprocessor's keep rule);
* ``kept``: points that reach the voxel encoder (all of them for dynamic voxelisation);
* ``sweep_share_before`` / ``sweep_share_after``: share of points with a time lag > 0
  among the in-range / the kept points;
* ``feature_std``: per-channel standard deviation of the voxel encoder's output, i.e. what
  the sparse encoder's first conv sees (the normalisation, if the config sets one).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from interlace.domains.driving.data.transforms.loading import TIME_LAG_COLUMN

__all__ = ["sample_coverage", "measure_coverage", "format_coverage", "MIN_KEPT_SHARE",
           "MAX_SWEEP_SHIFT"]

# Targets of issue 18 for the driving configs.
MIN_KEPT_SHARE = 0.95
MAX_SWEEP_SHIFT = 0.02
_COUNTS = ("in_range", "kept", "sweep_in_range", "sweep_kept")


def _kept_points(voxels: dict[str, Tensor]) -> Tensor:
    """(K, C) the points a voxels dict carries: every row of a dynamic one, the real
    slots (``slot < num_points``) of a hard one."""
    if "num_points" not in voxels:
        return voxels["voxels"]
    grid = voxels["voxels"]
    slots = torch.arange(grid.shape[1], device=grid.device)
    return grid[slots.unsqueeze(0) < voxels["num_points"].unsqueeze(1).long()]


def sample_coverage(points: Tensor, preprocessor: Any, training: bool
                    ) -> tuple[dict[str, int], dict[str, Tensor]]:
    """Counts for one point cloud.

    Args:
        points: (P, C) float, x, y, z first, the time lag in column 4.
        preprocessor: a ``DrivingDataPreprocessor`` (its ``voxel_layer`` and ``voxelize``).
        training: use the training voxel cap (as the train step does).

    Returns:
        ``{'in_range', 'kept', 'sweep_in_range', 'sweep_kept'}`` point counts, and the
        voxels dict the preprocessor made (for the voxel encoder).
    """
    from interlace.core.ops.voxelize import voxelize_dynamic

    layer = preprocessor.voxel_layer
    inside = (voxelize_dynamic(points, layer.voxel_size, layer.point_cloud_range) >= 0).all(1)
    voxels = preprocessor.voxelize([points], training)
    kept = _kept_points(voxels)
    has_lag = points.shape[1] > TIME_LAG_COLUMN
    counts = dict(
        in_range=int(inside.sum()), kept=int(kept.shape[0]),
        sweep_in_range=int((points[inside, TIME_LAG_COLUMN] > 0).sum()) if has_lag else 0,
        sweep_kept=int((kept[:, TIME_LAG_COLUMN] > 0).sum()) if has_lag else 0)
    return counts, voxels


def _summary(counts: dict[str, int], features: list[Tensor], samples: int) -> dict[str, Any]:
    def share(num: int, den: int) -> Optional[float]:
        return num / den if den else None

    out: dict[str, Any] = dict(samples=samples, **counts)
    out["kept_share"] = share(counts["kept"], counts["in_range"])
    out["sweep_share_before"] = share(counts["sweep_in_range"], counts["in_range"])
    out["sweep_share_after"] = share(counts["sweep_kept"], counts["kept"])
    before, after = out["sweep_share_before"], out["sweep_share_after"]
    out["sweep_shift"] = None if before is None or after is None else after - before
    out["meets_target"] = (out["kept_share"] is not None and out["sweep_shift"] is not None
                           and out["kept_share"] >= MIN_KEPT_SHARE
                           and abs(out["sweep_shift"]) <= MAX_SWEEP_SHIFT)
    if features:
        stacked = torch.cat(features).double()
        out["feature_std"] = [float(v) for v in stacked.std(dim=0, unbiased=False)]
    return out


def _sample_indices(length: int, num: int) -> list[int]:
    """``num`` indices spread evenly over the dataset (several scenes, not one)."""
    if length <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, length - 1, min(num, length))})


def _pipeline_points(sample: dict[str, Any]) -> Tensor:
    """The points a packed pipeline output (``Pack3DDetInputs``) carries."""
    inputs = sample["inputs"] if "inputs" in sample else sample
    points = inputs["points"]
    return points if isinstance(points, Tensor) else torch.as_tensor(np.asarray(points))


def measure_coverage(cfg: Any, num_samples: int = 8,
                     splits: Sequence[str] = ("train", "test"), seed: int = 0
                     ) -> dict[str, dict[str, Any]]:
    """Run N samples of each split's pipeline through the config's data preprocessor.

    Args:
        cfg: an mmengine ``Config`` of a driving detector (``model.data_preprocessor``,
            ``<split>_dataloader.dataset``; ``model.lidar_encoder.voxel_encoder`` is used
            for ``feature_std`` when present).
        num_samples: samples per split, spread evenly over the dataset.
        splits: dataloaders to read (``train``, ``val``, ``test``).
        seed: seeds numpy, random and torch before each split, so the training
            pipeline's random steps (sweep choice, GT paste, flips, shuffle) repeat.

    Returns:
        ``{split: summary}`` with the counts of :func:`sample_coverage` summed over the
        samples, ``kept_share``, ``sweep_share_before`` / ``_after``, ``sweep_shift``,
        ``meets_target`` (kept >= 0.95 and |shift| <= 0.02) and ``feature_std``.
    """
    from mmengine.registry import DATASETS, init_default_scope
    from mmengine.runner import set_random_seed

    from interlace.core.engine.registry import MODELS

    init_default_scope(cfg.get("default_scope", "interlace"))
    model_cfg = cfg.model
    preprocessor = MODELS.build(model_cfg["data_preprocessor"])
    encoder_cfg = (model_cfg.get("lidar_encoder") or {}).get("voxel_encoder")
    encoder = MODELS.build(encoder_cfg) if encoder_cfg is not None else None
    results: dict[str, dict[str, Any]] = {}
    for split in splits:
        loader = cfg.get(f"{split}_dataloader")
        if not loader:
            raise KeyError(f"the config has no {split}_dataloader")
        set_random_seed(seed)
        dataset = DATASETS.build(loader["dataset"])
        training = split == "train"
        counts = dict.fromkeys(_COUNTS, 0)
        features: list[Tensor] = []
        indices = _sample_indices(len(dataset), num_samples)
        for index in indices:
            points = _pipeline_points(dataset[index]).float()
            sample_counts, voxels = sample_coverage(points, preprocessor, training)
            for key in _COUNTS:
                counts[key] += sample_counts[key]
            if encoder is not None:
                with torch.no_grad():
                    encoded = encoder(voxels["voxels"], voxels.get("num_points"),
                                      voxels["coors"])
                features.append(encoded[0] if isinstance(encoded, tuple) else encoded)
        results[split] = _summary(counts, features, len(indices))
    return results


def format_coverage(results: dict[str, dict[str, Any]]) -> list[str]:
    """A plain-text table of :func:`measure_coverage`'s result, one row per split."""
    def pct(value: Optional[float], signed: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"

    lines = [f"{'split':<6} {'samples':>7} {'in range':>10} {'kept':>10} {'kept %':>8} "
             f"{'sweep % before':>14} {'sweep % after':>13} {'shift':>8}  target"]
    for split, r in results.items():
        lines.append(f"{split:<6} {r['samples']:>7} {r['in_range']:>10} {r['kept']:>10} "
                     f"{pct(r['kept_share']):>8} {pct(r['sweep_share_before']):>14} "
                     f"{pct(r['sweep_share_after']):>13} {pct(r['sweep_shift'], True):>8}  "
                     f"{'met' if r['meets_target'] else 'NOT met'}")
    lines.append(f"target: kept >= {MIN_KEPT_SHARE * 100:.0f} % of in-range points and the "
                 f"sweep share within {MAX_SWEEP_SHIFT * 100:.0f} points of before")
    for split, r in results.items():
        if r.get("feature_std"):
            stds = ", ".join(f"{v:.4g}" for v in r["feature_std"])
            lines.append(f"{split}: voxel-encoder output std per channel [{stds}]")
    return lines
