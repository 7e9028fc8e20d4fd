"""Convert a published weights file (torchvision, timm, mmdet / mmpretrain, MGCA) into an
Interlace checkpoint and report loaded / missing / unexpected key counts.

Example:
  python tools/analysis_tools/convert_checkpoint.py resnet50-0676ba61.pth r50.pth --from torchvision

The code is `interlace.tools.convert_checkpoint`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.convert_checkpoint import main

if __name__ == "__main__":
    run_cli(main)
