"""Merge the per-sample files of a driving inference run into one nuScenes submission JSON.

`tools/infer.py` with a driving config writes one ``<token>.json`` per sample (the boxes
already in the submission format) into its --out folder; this tool gathers them into the
single ``results_nusc.json`` that DetectionEval and the evaluation server read. It checks
that every sample of the info file has a file (an unfinished run is refused: run
`tools/infer.py` again with the same --out, it resumes), that the files agree on ``meta``
(which inputs the model used), and validates the merged submission before writing it
atomically.

Examples:
  python tools/analysis_tools/merge_submission.py \\
      --tokens-from data/nuscenes/nuscenes_infos_val.pkl --out work_dirs/val_tokens.txt
  python tools/infer.py CONFIG CKPT @work_dirs/val_tokens.txt --out work_dirs/preds
  python tools/analysis_tools/merge_submission.py work_dirs/preds \\
      --info data/nuscenes/nuscenes_infos_val.pkl --out work_dirs/results_nusc.json
  python tools/analysis_tools/merge_submission.py work_dirs/preds_no_camera \\
      --info data/nuscenes/nuscenes_infos_val.pkl --out results_nusc.json --meta use_camera=False

The first command writes the token list that `tools/infer.py` takes (``@FILE``, one sample
token per line) for every sample of an info file.
"""
from __future__ import annotations

import argparse
import os.path as osp

from interlace.core.engine.cli import ToolError

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Merge per-sample driving predictions (<token>.json) into one nuScenes "
                    "submission JSON, or write the token list of an info file.",
        epilog="examples:\n" + __doc__.split("Examples:\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pred_dir", nargs="?", metavar="PRED_DIR",
                        help="the `tools/infer.py --out` folder of <token>.json files")
    parser.add_argument("--info", metavar="PKL",
                        help="info file of the samples that were run (the submission must "
                             "cover exactly these samples)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="submission JSON to write (with --tokens-from: the token list)")
    parser.add_argument("--meta", nargs="+", default=None, metavar="KEY=BOOL",
                        help="set the submission's meta flags (use_camera, use_lidar, ...) "
                             "instead of taking them from the per-sample files")
    parser.add_argument("--tokens-from", metavar="PKL",
                        help="write the sample tokens of this info file to --out, one per "
                             "line, for `tools/infer.py ... @FILE`, and stop")
    args = parser.parse_args(argv)
    if args.tokens_from is None and (args.pred_dir is None or args.info is None):
        parser.error("PRED_DIR and --info are needed (or --tokens-from INFO to write a "
                     "token list)")
    return args


def parse_meta(items: list[str]) -> dict[str, bool]:
    """``["use_camera=False", ...]`` -> ``{"use_camera": False, ...}``; the keys are checked
    against the submission's meta keys."""
    from interlace.domains.driving.evaluation.submission import make_meta

    meta = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or value.lower() not in _TRUE + _FALSE:
            raise ToolError(f"--meta {item}: expected KEY=True or KEY=False")
        meta[key] = value.lower() in _TRUE
    try:
        make_meta(meta)
    except ValueError as error:  # names the allowed keys
        raise ToolError(f"--meta: {error}") from None
    return meta


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from interlace.domains.driving.data.info_files import InfoFileError
    from interlace.domains.driving.evaluation.inference_io import (merge_sample_predictions,
                                                                   write_sample_tokens)
    from interlace.domains.driving.evaluation.submission import SubmissionError

    try:
        if args.tokens_from is not None:
            path = write_sample_tokens(args.tokens_from, args.out)
            with open(path, encoding="utf-8") as stream:
                count = sum(1 for _ in stream)
            print(f"wrote {count} sample tokens of {args.tokens_from} to {path}")
            return 0
        if not osp.isdir(args.pred_dir):
            raise FileNotFoundError(f"prediction folder not found: {args.pred_dir}")
        modality = parse_meta(args.meta) if args.meta else None
        merged = merge_sample_predictions(args.pred_dir, args.info, args.out, modality=modality)
    except (InfoFileError, SubmissionError) as error:
        raise ToolError(str(error)) from None
    flags = ", ".join(f"{key}={value}" for key, value in merged["meta"].items() if value)
    print(f"merged {merged['samples']} samples, {merged['boxes']} boxes (meta: "
          f"{flags or 'no flag set'}) into {merged['path']}")
    return 0
