"""Time Interlace's ops and pipelines against the formulation they replace (see
`interlace.benchmarks.runner`; `--help` lists the groups and examples).

Example:
  python tools/analysis_tools/benchmark.py ops --scale smoke
"""
import sys

from interlace.benchmarks.runner import main

if __name__ == "__main__":
    sys.exit(main())
