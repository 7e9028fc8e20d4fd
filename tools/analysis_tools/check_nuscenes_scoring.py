"""Check the scoring chain (info file -> submission -> DetectionEval) on known predictions.

Example:
  python tools/analysis_tools/check_nuscenes_scoring.py --data-root /tmp/nus \
      --info /tmp/nus/nuscenes_infos_val.pkl

The code is `interlace.tools.check_nuscenes_scoring`; `--help` lists every option.
"""
from interlace.tools import check_nuscenes_scoring

if __name__ == "__main__":
    check_nuscenes_scoring.parse_args()  # --help and usage errors before torch is imported
    from interlace.core.engine.cli import run_cli

    run_cli(check_nuscenes_scoring.main)
