"""Benchmarks of Interlace's ops, interaction core and domain pipelines: each module defines
``CASES`` (see :mod:`.common`); :mod:`.runner` times them, one child process per
implementation (`tools/analysis_tools/benchmark.py` is its command line)."""
