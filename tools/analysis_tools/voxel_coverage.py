"""Points kept by voxelisation, and the sweeps' share of them, for a driving config's
train and test pipelines.

Example:
  python tools/analysis_tools/voxel_coverage.py configs/driving/transfusion_l_synthetic_tiny.py \
      --samples 8

The code is `interlace.tools.voxel_coverage`; `--help` lists every option.
"""
from interlace.tools import voxel_coverage

if __name__ == "__main__":
    voxel_coverage.parse_args()  # --help and usage errors before torch is imported
    from interlace.core.engine.cli import run_cli

    run_cli(voxel_coverage.main)
