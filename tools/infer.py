"""Batch inference: run a checkpoint over input files, one output per input.

Example:
  python tools/infer.py CONFIG CKPT data/in --out data/out

The code is `interlace.tools.infer`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.infer import main

if __name__ == "__main__":
    run_cli(main)
