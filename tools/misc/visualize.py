"""Draw one nuScenes sample (BEV + six cameras, GT and predictions) to a PNG.

Example:
  python tools/misc/visualize.py --info INFO.pkl --data-root data/nuscenes --index 0 --out vis.png

The code is `interlace.tools.visualize`; `--help` lists every option.
"""
from interlace.tools import visualize

if __name__ == "__main__":
    visualize.parse_args()  # --help and usage errors before torch is imported
    from interlace.core.engine.cli import run_cli

    run_cli(visualize.main)
