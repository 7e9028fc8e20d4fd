"""Write small synthetic data sets in the published layouts, for tests, demos and CI.

Examples:
  python tools/make_synthetic.py medical --out work_dirs/synthetic/mimic --studies 100 --seed 0
  python tools/make_synthetic.py medical --out /tmp/mimic --studies 20 --with-bad-cases

Each domain is a subcommand; `medical` writes a MIMIC-CXR-JPG 2.0 tree (images, reports,
metadata / split / chexpert / negbio CSVs) whose labels match the drawn findings.
Other domains add their subcommand in `SUBCOMMANDS` below.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

EXAMPLES = __doc__.split("Examples:\n", 1)[1].split("\n\n", 1)[0]


def _add_medical(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "medical", help="MIMIC-CXR-JPG 2.0 layout (chest X-rays + reports + label CSVs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python tools/make_synthetic.py medical --out /tmp/mimic "
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


# One entry per domain: a function adding its subparser (which sets `run`).
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_medical]


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


if __name__ == "__main__":
    sys.exit(main())
