"""Linear probe of an MGCA image encoder on MIMIC-CXR labels (AUROC at 1 / 10 / 100 %).

Example:
  python tools/analysis_tools/linear_probe.py CONFIG CKPT --data-root /tmp/mimic

The code is `interlace.tools.linear_probe`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.linear_probe import main

if __name__ == "__main__":
    run_cli(main)
