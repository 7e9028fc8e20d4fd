"""Build DeepInteraction's two-stage start from a LiDAR-only and an image checkpoint.

Example:
  python tools/model_converters/merge_checkpoints.py CONFIG --lidar LIDAR.pth --image IMAGE.pth --out init.pth

The code is `interlace.tools.merge_checkpoints`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.merge_checkpoints import main

if __name__ == "__main__":
    run_cli(main)
