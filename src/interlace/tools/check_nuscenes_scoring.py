"""Check the whole scoring chain (info file -> LiDAR-frame boxes -> submission JSON ->
nuscenes-devkit DetectionEval) with predictions whose score is known in advance:

  gt                   the info file's GT boxes as predictions (score 1): mAP >= 0.99,
                       mATE / mASE / mAOE / mAVE near 0
  gt_aug_undone        the same after a random BEV rotation / scale / flip / translation
                       and its undoing: as gt
  random               random boxes: mAP about 0
  gt_shifted_1m        GT moved 1 m sideways: mAP clearly lower, mATE about 1

When some classes have no GT in the split, every case is judged on the classes that do
(the *_present columns). The logic is interlace.domains.driving.evaluation.scoring_checks.

Examples:
  python tools/misc/make_synthetic.py driving --out /tmp/nus --scenes 5 --samples-per-scene 6 --version v1.0-mini
  python tools/create_data.py nuscenes --root /tmp/nus --version v1.0-mini --out /tmp/nus
  python tools/analysis_tools/check_nuscenes_scoring.py --data-root /tmp/nus --info /tmp/nus/nuscenes_infos_val.pkl --out /tmp/nus_checks

Writes OUT/<case>/results_nusc.json and the devkit's metrics_summary.json per case, and
OUT/scoring_checks.json with the table; exits 1 when an expectation fails.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Score GT, augmented GT, random and shifted boxes with DetectionEval "
                    "to check the export and scoring chain.",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="nuScenes root (v1.0-*/ tables)")
    parser.add_argument("--info", required=True, help="info file of the evaluated split")
    parser.add_argument("--out", required=True, help="folder for the JSON files")
    parser.add_argument("--eval-set", help="split (default: val / mini_val by version)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from nuscenes import NuScenes

    from interlace.core.engine.cli import ToolError
    from interlace.core.engine.safe_pickle import load_pickle
    from interlace.domains.driving.evaluation.nuscenes_metric import default_eval_set
    from interlace.domains.driving.evaluation.scoring_checks import (COLUMNS, format_table,
                                                                     run_checks)

    args = parse_args(argv)
    if not os.path.isfile(args.info):
        raise FileNotFoundError(f"info file not found: {args.info}")
    payload = load_pickle(args.info)  # plain data and numpy arrays only
    if not isinstance(payload, dict) or "data_list" not in payload:
        raise ToolError(f"{args.info}: not an mmdet3d v1.x info file (no 'data_list')")
    version = payload.get("metainfo", {}).get("version")
    if version is None:
        raise ToolError(f"{args.info}: metainfo has no 'version'")
    eval_set = args.eval_set or default_eval_set(version)
    if not os.path.isdir(os.path.join(args.data_root, version)):
        raise FileNotFoundError(f"{args.data_root}: no {version}/ tables")
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=version, dataroot=args.data_root, verbose=False)
    print(f"scoring {len(payload['data_list'])} samples of {eval_set} ({version})")
    report = run_checks(nusc, payload["data_list"], eval_set, args.out, args.seed)
    print(format_table(report["table"]))
    if report["classes_without_gt"]:
        print(f"classes without GT in {eval_set}: {', '.join(report['classes_without_gt'])} "
              "(the devkit gives them AP 0 and TP errors 1); every case is judged on the "
              "*_present columns, which leave them out")
        print(format_table(report["table"], [c + "_present" for c in COLUMNS if c != "NDS"]))
    print(f"augment + undo: largest change of a box number {report['aug_roundtrip_max_error']:.2e}")
    for check in report["checks"]:
        print(("ok    " if check["passed"] else "FAIL  ") + check["check"])
    print(f"wrote {os.path.join(args.out, 'scoring_checks.json')}")
    return 0 if report["passed"] else 1
