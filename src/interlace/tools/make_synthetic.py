"""Write small synthetic data sets in the published layouts, for tests, demos and CI.

Examples:
  python tools/misc/make_synthetic.py medical --out work_dirs/synthetic/mimic --studies 100 --seed 0
  python tools/misc/make_synthetic.py medical --out /tmp/mimic --studies 20 --with-bad-cases
  python tools/misc/make_synthetic.py driving --out data/nuscenes_synthetic --scenes 4 --samples-per-scene 10
  python tools/misc/make_synthetic.py driving --out /tmp/nus_full --scenes 1 --samples-per-scene 2 --scale nuscenes
  python tools/misc/make_synthetic.py remote_sensing --out data/synthetic_s1s2

Each domain is a subcommand: `medical` writes a MIMIC-CXR-JPG 2.0 tree (images, reports,
metadata / split / chexpert / negbio CSVs, finding masks) whose labels match the drawn
findings; `driving` a nuScenes database (tables, LiDAR sweeps as .pcd.bin, six camera
JPEGs) that nuscenes-devkit loads unchanged; `remote_sensing` Sentinel-1 / Sentinel-2 time
series and a land-cover label as GeoTIFFs in UTM. Add a domain in `SUBCOMMANDS` below.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

EXAMPLES = __doc__.split("Examples:\n", 1)[1].split("\n\n", 1)[0]


def _add_medical(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "medical", help="MIMIC-CXR-JPG 2.0 layout (chest X-rays + reports + label CSVs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python tools/misc/make_synthetic.py medical --out /tmp/mimic "
               "--studies 100 --seed 0 --with-bad-cases")
    parser.add_argument("--out", required=True, help="folder to write (created if needed)")
    parser.add_argument("--studies", type=int, default=100, help="number of good studies")
    parser.add_argument("--seed", type=int, default=0, help="random seed (output is "
                        "deterministic given it)")
    parser.add_argument("--with-bad-cases", action="store_true",
                        help="add broken studies: empty report, lateral-only, truncated "
                             "JPEG, missing report, missing image")
    parser.set_defaults(run=_run_medical)


def _run_medical(args: argparse.Namespace) -> str:
    from interlace.domains.medical.data.synthetic import make_synthetic_mimic
    if args.studies < 1:
        raise SystemExit("--studies must be at least 1")
    summary = make_synthetic_mimic(args.out, args.studies, args.seed,
                                   with_bad_cases=args.with_bad_cases)
    return (f"medical: {summary['studies']} studies, {summary['frontal_images']} frontal + "
            f"{summary['lateral_images']} lateral images in {summary['root']}"
            + (f"; bad cases: {summary['bad_cases']}" if summary["bad_cases"] else ""))


def _add_driving(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "driving", help="nuScenes layout (tables, LiDAR sweeps, 6 camera JPEGs) that "
                        "nuscenes-devkit loads",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python tools/misc/make_synthetic.py driving --out /tmp/nuscenes "
               "--scenes 4 --samples-per-scene 10\n"
               "  python tools/misc/make_synthetic.py driving --out /tmp/nus_full --scenes 1 "
               "--samples-per-scene 2 --scale nuscenes\n"
               "then: NuScenes(version='v1.0-mini', dataroot='/tmp/nuscenes')")
    parser.add_argument("--out", required=True, help="dataroot to write (created if needed)")
    parser.add_argument("--scenes", type=int, default=4, help="number of scenes (v1.0-mini "
                        "has only 10 official names; about 20%% of the scenes get val names)")
    parser.add_argument("--samples-per-scene", type=int, default=10,
                        help="key frames (2 Hz) per scene")
    parser.add_argument("--version", default="v1.0-mini",
                        choices=["v1.0-mini", "v1.0-trainval", "v1.0-test"],
                        help="database version (decides the split names; v1.0-test has no "
                             "annotations)")
    parser.add_argument("--scale", default="cpu", choices=["cpu", "nuscenes"],
                        help="cpu: 400x225 images, ~10k points per sweep; nuscenes: "
                             "1600x900 images, ~34k points per sweep")
    parser.add_argument("--seed", type=int, default=0, help="random seed (output is "
                        "deterministic given it)")
    parser.set_defaults(run=_run_driving)


def _run_driving(args: argparse.Namespace) -> str:
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes
    try:
        summary = make_synthetic_nuscenes(args.out, args.scenes, args.samples_per_scene,
                                          version=args.version, scale=args.scale,
                                          seed=args.seed)
    except ValueError as error:
        raise SystemExit(f"driving: {error}") from None
    splits = "; ".join(f"{split}: {', '.join(names)}"
                       for split, names in summary["splits"].items())
    return (f"driving: {summary['version']} with {len(summary['scenes'])} scenes, "
            f"{summary['samples']} samples, {summary['sample_data']} sample_data, "
            f"{summary['annotations']} annotations, "
            f"{summary['mean_points_per_key_frame']:.0f} points per key frame in "
            f"{summary['root']} ({splits})")


def _add_remote_sensing(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "remote_sensing", help="Sentinel-1/2 time series + land-cover labels as GeoTIFFs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python tools/misc/make_synthetic.py remote_sensing --out /tmp/s1s2 "
               "--tiles 3 --size 256 --dates 12 --seed 0")
    parser.add_argument("--out", required=True, help="folder to write (created if needed)")
    parser.add_argument("--tiles", type=int, default=3, help="number of tiles (the third "
                        "is in another UTM zone; default 3)")
    parser.add_argument("--size", type=int, default=256, help="tile side in 10 m pixels")
    parser.add_argument("--dates", type=int, default=12, help="acquisition dates per tile")
    parser.add_argument("--seed", type=int, default=0, help="random seed (deterministic)")
    parser.add_argument("--separate-bands", action="store_true",
                        help="one S2 file per band instead of one 11-band file per date")
    parser.set_defaults(run=_run_remote_sensing)


def _run_remote_sensing(args: argparse.Namespace) -> str:
    from interlace.domains.remote_sensing.data.synthetic import make_synthetic_s1s2
    if args.tiles < 1 or args.dates < 1 or args.size < 32 or args.size % 2:
        raise SystemExit("--tiles and --dates must be >= 1, --size an even number >= 32")
    summary = make_synthetic_s1s2(args.out, args.tiles, args.size, args.dates, args.seed,
                                  s2_layout="separate" if args.separate_bands else "multiband")
    zones = ", ".join(f"{tile} {crs}" for tile, crs in summary["crs"].items())
    return (f"remote_sensing: {len(summary['tiles'])} tiles ({zones}) x {summary['dates']} "
            f"dates, {summary['size']}^2 px, {summary['files']} GeoTIFFs in {summary['root']}")


# One entry per domain: a function adding its subparser (which sets `run`).
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_medical, _add_driving, _add_remote_sensing]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write synthetic data sets in the published layouts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + EXAMPLES)
    subparsers = parser.add_subparsers(dest="domain", required=True, metavar="DOMAIN")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    message = args.run(args)
    print(f"{message} ({time.perf_counter() - start:.1f} s)")
    return 0
