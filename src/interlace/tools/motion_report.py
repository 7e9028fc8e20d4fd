"""Report how well a nuScenes submission gets velocity and direction of travel right.

The submission's boxes are matched to the GT by the devkit's rule (greedy by score, BEV
centre distance below --dist-th, 2 m by default). Per class, and pooled over vehicles
(car, truck, bus, trailer, construction_vehicle) and over all eight moving classes, it
prints for the matched objects:

  moving (GT speed > 1 m/s)   mean velocity error, the error of predicting 0 m/s on the
                              same objects, mean predicted / GT speed, direction accuracy
  parked (GT speed < 0.2 m/s) direction accuracy, mean velocity error (motion made up)

Direction accuracy is the fraction with |yaw_pred - yaw_gt| < 90 degrees (wrapped). GT
and predictions are loaded and range-filtered as DetectionEval does; the submission may
cover part of the split. The logic is interlace.domains.driving.evaluation.motion_diagnosis.

Examples:
  python tools/analysis_tools/motion_report.py work_dirs/results_nusc.json \\
      --data-root data/nuscenes --version v1.0-trainval --out work_dirs/motion.json
  python tools/analysis_tools/motion_report.py /tmp/nus_checks/gt/results_nusc.json \\
      --data-root /tmp/nus --min-score 0.3

--version may be left out when DATA_ROOT holds one v1.0-* folder; --eval-set defaults to
val (trainval) or mini_val (mini).
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import io
import os.path as osp

from interlace.core.engine.cli import ToolError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-class velocity error and direction accuracy of a nuScenes "
                    "submission's matched detections, for moving and parked objects.",
        epilog="examples:\n" + __doc__.split("Examples:\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submission", metavar="SUBMISSION",
                        help="nuScenes submission JSON (results_nusc.json)")
    parser.add_argument("--data-root", required=True, metavar="DIR",
                        help="nuScenes root holding the v1.0-*/ tables (the GT)")
    parser.add_argument("--version", help="database version (default: the one v1.0-* "
                                          "folder in DATA_ROOT)")
    parser.add_argument("--eval-set", help="split (default: val / mini_val by version)")
    parser.add_argument("--dist-th", type=float, default=2.0, metavar="M",
                        help="match threshold on the BEV centre distance (default 2 m)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="drop predictions scoring below this before matching "
                             "(default 0: all, as DetectionEval)")
    parser.add_argument("--out", metavar="FILE.json", help="also write the report as JSON")
    args = parser.parse_args(argv)
    if args.dist_th <= 0:
        parser.error("--dist-th must be positive")
    return args


def find_version(data_root: str, version: str | None) -> str:
    """`version`, checked to exist under `data_root`, or the only ``v1.0-*`` folder there."""
    if not osp.isdir(data_root):
        raise FileNotFoundError(f"--data-root not found: {data_root}")
    if version is not None:
        if not osp.isdir(osp.join(data_root, version)):
            raise FileNotFoundError(f"{data_root}: no {version}/ tables")
        return version
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(data_root, "v1.0-*"))
                   if osp.isdir(p))
    if len(found) != 1:
        raise ToolError(f"{data_root}: {'no' if not found else 'several'} v1.0-* table "
                        f"folders{' (' + ', '.join(found) + ')' if found else ''}; "
                        "name one with --version")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from nuscenes import NuScenes

    from interlace.domains.driving.evaluation.motion_diagnosis import (format_table,
                                                                       motion_diagnosis,
                                                                       write_report)
    from interlace.domains.driving.evaluation.nuscenes_metric import default_eval_set
    from interlace.domains.driving.evaluation.submission import SubmissionError

    if not osp.isfile(args.submission):
        raise FileNotFoundError(f"submission file not found: {args.submission}")
    version = find_version(args.data_root, args.version)
    eval_set = args.eval_set or default_eval_set(version)
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=version, dataroot=args.data_root, verbose=False)
    try:
        report = motion_diagnosis(nusc, args.submission, eval_set, dist_th=args.dist_th,
                                  min_score=args.min_score)
    except (SubmissionError, ValueError) as error:
        raise ToolError(str(error)) from None
    print(f"{args.submission}: {report['samples']} of the {report['split_samples']} samples "
          f"of {eval_set} ({version})")
    print(format_table(report))
    if args.out:
        print(f"wrote {write_report(report, args.out)}")
    return 0
