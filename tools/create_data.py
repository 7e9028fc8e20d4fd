"""Create info files and the GT-paste database for a data set.

Example:
  python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-mini

The code is `interlace.tools.create_data`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.create_data import main

if __name__ == "__main__":
    run_cli(main)
