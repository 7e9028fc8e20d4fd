"""`make demo`: run every end-to-end job on generated data and print a summary.

Example:
  python tools/demo.py --only env ops

The code is `interlace.demo.runner`; `--help` lists every option.
"""
import sys

from interlace.demo.runner import main

if __name__ == "__main__":
    sys.exit(main())
