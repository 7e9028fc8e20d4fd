"""Draw one nuScenes sample to a PNG: BEV (points of the key frame and its sweeps, ground
truth in green, predictions in red, ego at the origin, range rings) beside the six camera
images with the boxes' 3D edges projected in.

Examples:
  python tools/misc/visualize.py --info data/nuscenes/nuscenes_infos_val.pkl --data-root data/nuscenes --index 0 --out vis/sample0.png
  python tools/misc/visualize.py --info data/nuscenes/nuscenes_infos_val.pkl --data-root data/nuscenes --token 3e8750f331d7499e9b5123e9eb70f2e2 --pred work_dirs/run1/results_nusc.json --score-thr 0.3 --out vis/pred.png

The info file is an mmdet3d v1.x `nuscenes_infos_*.pkl` (Interlace's or mmdet3d's own);
`--pred` is a nuScenes submission JSON (global frame), moved back into the sample's LiDAR
frame for drawing.
"""
from __future__ import annotations

import argparse
import os
import pickle



def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render one nuScenes sample (BEV + 6 cameras) with GT and predicted boxes.",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--info", required=True, help="mmdet3d v1.x info file (.pkl)")
    parser.add_argument("--data-root", required=True, help="nuScenes root (samples/, sweeps/)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, help="position of the sample in the info file")
    which.add_argument("--token", help="sample token")
    parser.add_argument("--pred", help="submission JSON whose boxes to draw (global frame)")
    parser.add_argument("--score-thr", type=float, default=0.3,
                        help="draw predictions with at least this score (default 0.3)")
    parser.add_argument("--max-sweeps", type=int, default=None,
                        help="sweeps added to the BEV (default: all in the info file)")
    parser.add_argument("--range", type=float, default=55.0, dest="bev_range",
                        help="half-width of the BEV in metres (default 55)")
    parser.add_argument("--out", required=True, help="PNG to write")
    return parser.parse_args(argv)


def load_infos(path: str) -> list[dict]:
    from interlace.core.engine.cli import ToolError
    from interlace.core.engine.safe_pickle import UnsafePickleError, load_pickle
    if not os.path.isfile(path):
        raise FileNotFoundError(f"info file not found: {path}")
    try:
        payload = load_pickle(path)  # plain data and numpy arrays only
    except UnsafePickleError:
        raise  # names the file and the refused global; exit 2 via run_cli
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ToolError(f"{path}: not a readable info pickle ({error})") from None
    if not isinstance(payload, dict) or "data_list" not in payload:
        raise ToolError(f"{path}: not an mmdet3d v1.x info file (no 'data_list')")
    return payload["data_list"]


def pick_sample(infos: list[dict], path: str, index=None, token=None) -> dict:
    from interlace.core.engine.cli import ToolError
    if token is not None:
        for info in infos:
            if info.get("token") == token:
                return info
        raise ToolError(f"{path}: no sample with token {token}")
    if not 0 <= index < len(infos):
        raise ToolError(f"{path}: --index {index} out of range (0..{len(infos) - 1})")
    return infos[index]


def main(argv=None) -> int:
    from interlace.core.engine.cli import ToolError
    from interlace.domains.driving.evaluation.submission import SubmissionError, load_submission
    from interlace.domains.driving.evaluation.visualization import prediction_boxes, render_sample

    args = parse_args(argv)
    infos = load_infos(args.info)
    info = pick_sample(infos, args.info, args.index, args.token)
    predictions = None
    if args.pred:
        try:
            submission = load_submission(args.pred)
        except SubmissionError as error:
            raise ToolError(str(error)) from None
        if info["token"] not in submission["results"]:
            raise ToolError(f"{args.pred}: no results for sample {info['token']}")
        predictions, _, _ = prediction_boxes(submission, info, args.score_thr)
    try:
        out = render_sample(info, args.data_root, args.out, predictions, args.max_sweeps,
                            args.bev_range, title=f"sample {info['token']}")
    except ValueError as error:
        raise ToolError(str(error)) from None
    drawn = 0 if predictions is None else len(predictions)
    print(f"wrote {out} ({len(info.get('instances', []))} GT boxes, {drawn} predictions)")
    return 0
