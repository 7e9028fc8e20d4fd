"""Score a trained MGCA's word-to-patch attention against finding masks.

Example:
  python tools/analysis_tools/medical_grounding.py CONFIG CKPT --data-root /tmp/mimic \
      --out-dir /tmp/ground

The code is `interlace.tools.medical_grounding`; `--help` lists every option.
"""
from interlace.core.engine.cli import run_cli
from interlace.tools.medical_grounding import main

if __name__ == "__main__":
    run_cli(main)
