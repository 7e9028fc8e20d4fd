"""Per-class velocity error and direction accuracy of a nuScenes submission's detections.

Example:
  python tools/analysis_tools/motion_report.py results_nusc.json --data-root data/nuscenes \
      --out motion.json

The code is `interlace.tools.motion_report`; `--help` lists every option.
"""
from interlace.tools import motion_report

if __name__ == "__main__":
    motion_report.parse_args()  # --help and usage errors before torch is imported
    from interlace.core.engine.cli import run_cli

    run_cli(motion_report.main)
