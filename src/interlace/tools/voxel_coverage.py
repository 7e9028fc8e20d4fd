"""Share of a driving config's in-range LiDAR points that voxelisation keeps, and the
sweeps' share (points with time lag > 0) before and after it, for N samples of the
config's train and test pipelines (run through the config's own data preprocessor).

Targets: kept >= 95 % of in-range points, and a sweep share after voxelisation within
0.02 of before, in both pipelines. The table also gives the per-channel spread of the
voxel encoder's output (x, y, z, intensity, time lag), what the sparse encoder sees. The
logic is interlace.domains.driving.evaluation.voxel_coverage.

Examples:
  python tools/analysis_tools/voxel_coverage.py configs/driving/transfusion_l_synthetic_tiny.py
  python tools/analysis_tools/voxel_coverage.py CONFIG --samples 8 --splits test \\
      --cfg-options model.data_preprocessor.voxel_layer.max_num_points=-1 \\
      model.lidar_encoder.voxel_encoder.type=DynamicMeanVoxelEncoder --out coverage.json

Exits 1 with --strict when a split misses the targets.
"""
from __future__ import annotations

import argparse

from mmengine.config import DictAction

SPLITS = ("train", "val", "test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Points kept by voxelisation and the sweeps' share of them, per "
                    "pipeline of a driving config.",
        epilog="examples:\n" + __doc__.split("Examples:\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="driving detector config")
    parser.add_argument("--samples", type=int, default=8,
                        help="samples per pipeline, spread over the dataset (default 8)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=["train", "test"],
                        help="dataloaders whose pipelines are measured (default train test)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the training pipeline's random steps")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. "
                             "model.data_preprocessor.voxel_layer.max_num_points=-1")
    parser.add_argument("--out", metavar="JSON", help="also write the result here")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a split misses the targets")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples must be at least 1, got {args.samples}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from interlace.core.engine.atomic_files import write_json_atomic
    from interlace.core.engine.cli import ToolError, load_config
    from interlace.domains.driving.evaluation.voxel_coverage import (format_coverage,
                                                                     measure_coverage)

    cfg = load_config(args.config, args.cfg_options)
    if "data_preprocessor" not in cfg.get("model", {}):
        raise ToolError(f"{args.config}: model.data_preprocessor is not set (not a driving "
                        f"detector config)")
    results = measure_coverage(cfg, args.samples, args.splits, args.seed)
    print(f"{args.config}: {args.samples} samples per pipeline")
    print("\n".join(format_coverage(results)))
    if args.out:
        write_json_atomic(args.out, dict(config=args.config, cfg_options=args.cfg_options,
                                         results=results))
        print(f"wrote {args.out}")
    if args.strict and not all(r["meets_target"] for r in results.values()):
        return 1
    return 0
