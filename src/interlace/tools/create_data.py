"""Create info files (mmdet3d v1.x layout) and the GT-paste database for a data set.

Examples:
  python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval --out data/nuscenes
  python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-mini --out data/nuscenes --max-sweeps 10
  python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-test --out data/nuscenes --extra-tag nuscenes
  python tools/create_data.py nuscenes --root data/other_car --version v1.0-trainval --cameras CAM_FRONT CAM_BACK CAM_FRONT_LEFT
  python tools/create_data.py nuscenes --root data/lidar_only --version v1.0-mini --cameras none

`nuscenes` reads the tables with nuscenes-devkit and writes OUT/TAG_infos_train.pkl and
OUT/TAG_infos_val.pkl (v1.0-trainval, v1.0-mini) or OUT/TAG_infos_test.pkl (v1.0-test),
then, from the train infos, the GT-paste database OUT/nuscenes_gt_database/ and
OUT/nuscenes_dbinfos_train.pkl (skip it with --skip-gt-database). Files written by mmdet3d's
create_data.py in the same layout can be used in their place. --cameras names the camera
channels of a nuScenes-format database from another vehicle (default: the six nuScenes
cameras); `--cameras none` writes infos without images for a LiDAR-only database.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from interlace.core.engine.cli import ToolError

EXAMPLES = __doc__.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
VERSIONS = ("v1.0-trainval", "v1.0-mini", "v1.0-test")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Create info files and the GT-paste database for a data set.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n" + EXAMPLES)
    subparsers = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    nuscenes = subparsers.add_parser(
        "nuscenes", help="nuScenes info files (mmdet3d v1.x layout) + GT-paste database",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python tools/create_data.py nuscenes --root data/nuscenes "
               "--version v1.0-mini --out data/nuscenes")
    nuscenes.add_argument("--root", required=True, metavar="DIR",
                          help="nuScenes root (samples/, sweeps/, VERSION/*.json)")
    nuscenes.add_argument("--version", default="v1.0-trainval", choices=VERSIONS,
                          help="database version (default: v1.0-trainval)")
    nuscenes.add_argument("--out", metavar="DIR",
                          help="output folder (default: --root, as mmdet3d)")
    nuscenes.add_argument("--max-sweeps", type=int, default=10, metavar="N",
                          help="previous LiDAR sweeps per sample (default: 10)")
    nuscenes.add_argument("--extra-tag", default="nuscenes", metavar="TAG",
                          help="info file prefix: TAG_infos_train.pkl (default: nuscenes)")
    nuscenes.add_argument("--cameras", nargs="+", metavar="CHANNEL",
                          help="camera channels to write, in view order (default: the six "
                               "nuScenes cameras); `none` for a LiDAR-only database")
    nuscenes.add_argument("--skip-gt-database", action="store_true",
                          help="do not build the GT-paste database")
    nuscenes.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    nuscenes.set_defaults(run=run_nuscenes)
    return parser


def _create_gt_database(info_path: Path, root: Path, out: Path, max_sweeps: int) -> None:
    try:
        from interlace.domains.driving.data.gt_paste import create_groundtruth_database
    except ImportError as error:
        print(f"GT-paste database skipped: interlace.domains.driving.data.gt_paste is not "
              f"available ({error})")
        return
    start = time.perf_counter()
    summary = create_groundtruth_database(str(info_path), str(root), str(out),
                                          max_sweeps=max_sweeps)
    # The summary is the dbinfos dict (class -> list of objects): report counts only.
    counts = {name: len(entries) if isinstance(entries, (list, tuple)) else entries
              for name, entries in (summary or {}).items()}
    print(f"GT-paste database in {out}: {sum(v for v in counts.values() if isinstance(v, int))}"
          f" objects {counts} ({time.perf_counter() - start:.1f} s)")


def _camera_list(given: list[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """--cameras as a tuple: the default when not given, () for `none`."""
    if given is None:
        return default
    if [name.lower() for name in given] == ["none"]:
        return ()
    if any(name.lower() == "none" for name in given):
        raise ToolError(f"--cameras none stands alone (LiDAR-only), got {given}")
    return tuple(given)


def run_nuscenes(args: argparse.Namespace) -> int:
    if args.max_sweeps < 0:
        raise ToolError(f"--max-sweeps must be >= 0, got {args.max_sweeps}")
    root = Path(args.root)
    if not root.is_dir():  # before the (slow) import of the driving data package
        raise FileNotFoundError(f"{root}: nuScenes data root not found")
    from interlace.domains.driving.data.info_creation import (InfoCreationError,
                                                              create_nuscenes_infos)
    from interlace.domains.driving.data.info_files import InfoFileError

    from interlace.domains.driving.data.nuscenes_names import CAMERAS

    out = Path(args.out) if args.out else root
    cameras = _camera_list(args.cameras, CAMERAS)
    print(f"cameras: {', '.join(cameras) if cameras else 'none (LiDAR-only)'}")
    start = time.perf_counter()
    try:
        written = create_nuscenes_infos(root, args.version, out, extra_tag=args.extra_tag,
                                        max_sweeps=args.max_sweeps,
                                        progress=not args.no_progress, cameras=cameras)
    except (InfoCreationError, InfoFileError) as error:
        raise ToolError(str(error)) from error
    for split, entry in written.items():
        print(f"{split}: {entry['samples']} samples from {entry['scenes']} scenes -> "
              f"{entry['path']}")
    print(f"info files done ({time.perf_counter() - start:.1f} s)")
    if "train" in written and not args.skip_gt_database:
        _create_gt_database(written["train"]["path"], root, out, args.max_sweeps)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
