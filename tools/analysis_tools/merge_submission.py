"""Merge a driving inference run's per-sample files into one nuScenes submission JSON.

Example:
  python tools/analysis_tools/merge_submission.py work_dirs/preds --info INFO.pkl \
      --out results_nusc.json

The code is `interlace.tools.merge_submission`; `--help` lists every option.
"""
from interlace.tools import merge_submission

if __name__ == "__main__":
    merge_submission.parse_args()  # --help and usage errors before torch is imported
    from interlace.core.engine.cli import run_cli

    run_cli(merge_submission.main)
