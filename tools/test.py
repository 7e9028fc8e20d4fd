"""Evaluate a checkpoint on a config's test set.

Example:
  python tools/test.py CONFIG work_dirs/run1/epoch_6.pth

The code is `interlace.tools.test`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.test import main

if __name__ == "__main__":
    run_cli(main)
