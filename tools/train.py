"""Train a model from a config with mmengine's Runner.

Example:
  python tools/train.py configs/driving/transfusion_l_nus.py --work-dir work_dirs/run1

The code is `interlace.tools.train`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.train import main

if __name__ == "__main__":
    run_cli(main)
