"""Per-band mean / std of Sentinel-2 and Sentinel-1 rasters over valid pixels.

Streams over windows of every file (memory stays at one window), leaves out nodata,
non-finite and (S2) SCL-cloud pixels, and writes JSON that SentinelTimeSeriesDataset
reads from DATA_ROOT/band_stats.json to normalise (value - mean) / std. Statistics are
of the stored values: S2 reflectance x 10000, S1 dB.

Examples:
  python tools/misc/make_synthetic.py remote_sensing --out /tmp/s1s2
  python tools/dataset_converters/compute_band_stats.py /tmp/s1s2 --out /tmp/s1s2/band_stats.json
  python tools/dataset_converters/compute_band_stats.py DATA_ROOT --out stats.json --window 1024 --modalities s2
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-band normalisation statistics of a Sentinel-1/2 data root.",
        epilog="examples:\n" + __doc__.split("Examples:\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", help="folder in SentinelTimeSeriesDataset's layout")
    parser.add_argument("--out", default=None, help="output JSON (default: "
                        "DATA_ROOT/band_stats.json)")
    parser.add_argument("--window", type=int, default=512, help="window side in pixels "
                        "read at a time (default 512)")
    parser.add_argument("--modalities", nargs="+", default=["s2", "s1"], choices=["s2", "s1"],
                        help="modalities to compute (default: s2 s1)")
    parser.add_argument("--no-cloud-mask", action="store_true",
                        help="keep SCL cloud / shadow pixels in the statistics")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from interlace.domains.remote_sensing.data.band_stats import (BAND_STATS_FILE,
                                                                  compute_band_stats,
                                                                  save_band_stats)
    from interlace.domains.remote_sensing.data.bands import SCL_CLOUD_CLASSES
    from interlace.domains.remote_sensing.data.file_catalog import ModalitySpec, build_catalog
    from interlace.domains.remote_sensing.data.sentinel_dataset import DEFAULT_MODALITIES

    if not os.path.isdir(args.data_root):
        print(f"error: data root not found: {args.data_root}", file=sys.stderr)
        return 2
    if args.window < 16:
        print("error: --window must be at least 16", file=sys.stderr)
        return 2
    specs = [ModalitySpec(name=name, **DEFAULT_MODALITIES[name]) for name in args.modalities]
    start = time.perf_counter()
    catalog = build_catalog(args.data_root, specs)
    if not catalog.tiles:
        print(f"error: no {'/'.join(args.modalities)} files found under {args.data_root}",
              file=sys.stderr)
        return 1
    stats = compute_band_stats(catalog, specs, window=args.window,
                               cloud_classes=None if args.no_cloud_mask else SCL_CLOUD_CLASSES)
    stats["source"] = os.path.abspath(args.data_root)
    out = args.out or os.path.join(args.data_root, BAND_STATS_FILE)
    save_band_stats(stats, out)
    for name in args.modalities:
        if name in stats:
            entry = stats[name]
            pairs = ", ".join(f"{b}={m:.4g}±{s:.3g}" for b, m, s in
                              zip(entry["bands"], entry["mean"], entry["std"]))
            print(f"{name}: {pairs}")
    if catalog.skipped:
        print(f"skipped files: {len(catalog.skipped)} (see the log)")
    print(f"wrote {out} ({time.perf_counter() - start:.1f} s)")
    return 0
