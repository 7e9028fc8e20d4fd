"""Write small synthetic data sets (MIMIC-CXR, nuScenes, Sentinel-1/2) in the published layouts.

Example:
  python tools/misc/make_synthetic.py medical --out /tmp/mimic --studies 100

The code is `interlace.tools.make_synthetic`; `--help` lists every option.
"""
import sys

from interlace.tools.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main())
