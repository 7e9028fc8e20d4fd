"""``tools/check.py``: run a domain's check and exit non-zero when a threshold fails.

Examples:
  python tools/check.py remote_sensing
  python tools/check.py driving --update-zoo    # and record the figures in the model zoo
  cd /tmp/scratch && python /path/to/interlace/tools/check.py \\
      /path/to/interlace/configs/checks/medical.py --smoke     # a minute, not a result
  python tools/check.py configs/checks/medical.py --only mgca mgca_probe
  python tools/check.py driving --resume        # continue an interrupted check

A DOMAIN runs configs/checks/DOMAIN.py; a path runs that check config. Each check writes
result.json and result.md (the steps, their metrics, each threshold with PASS / FAIL and
the tools/train.py command of every training step) into --out (default
work_dirs/checks/<check name>). Exit codes: 0 every threshold holds, 1 one fails, 2 the
check could not run (bad config, missing file).
"""
from __future__ import annotations

import argparse
import os.path as osp
from typing import Optional

from interlace.core.engine.cli import ToolError

from .framework import DOMAINS, format_markdown, run_check

CHECK_CONFIGS = "configs/checks"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/check.py", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", help=f"a domain ({', '.join(sorted(DOMAINS))}) or a check "
                                      "config path")
    parser.add_argument("--out", help="where result.json / result.md go")
    parser.add_argument("--smoke", action="store_true",
                        help="the check config's `smoke` settings: tiny data and a few "
                             "iterations per run, to test the sequence (figures mean "
                             "nothing). It writes data/checks/ and work_dirs/ under the "
                             "current folder: run it in a scratch folder")
    parser.add_argument("--update-zoo", action="store_true",
                        help="record the figures in the model-zoo metafiles the check config "
                             "names (`model_zoo`) and regenerate their READMEs' tables "
                             "(not with --smoke or --only)")
    parser.add_argument("--resume", action="store_true",
                        help="each training step resumes from its work dir's latest "
                             "checkpoint (as tools/train.py --resume); a run that already "
                             "spent its iteration budget is taken as it is and marked "
                             "'reused'. Test steps always run")
    parser.add_argument("--only", nargs="+", metavar="STEP",
                        help="run only these steps (and the thresholds they decide)")
    return parser


def check_config_path(check: str) -> str:
    if check in DOMAINS:
        return osp.join(CHECK_CONFIGS, f"{check}.py")
    return check


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.update_zoo and (args.smoke or args.only):
        raise ToolError("--update-zoo records a whole check's figures: not with --smoke / --only")
    path = check_config_path(args.check)
    report = run_check(path, args.out, args.smoke, args.only, args.resume)
    if args.update_zoo:
        from mmengine.config import Config

        from .model_zoo import record_results
        for written in record_results(report, Config.fromfile(path).get("model_zoo", [])):
            print(f"model zoo: {written} and its README updated")
    print("\n" + format_markdown(report))
    failed = [row["name"] for row in report["thresholds"] if not row["holds"]]
    print(f"check {'FAILED: ' + ', '.join(failed) if failed else 'passed'}")
    return 1 if failed else 0
