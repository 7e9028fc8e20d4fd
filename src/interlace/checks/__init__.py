"""Checks: each domain's proof that its method learns, as a sequence of mmengine Runner
runs of complete configs (``configs/checks/<domain>.py``), scored against thresholds
written in the check config. ``tools/check.py DOMAIN`` runs one."""
from .framework import CheckError, evaluate_expression, run_check

__all__ = ["CheckError", "evaluate_expression", "run_check"]
