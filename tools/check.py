"""Run a domain's check: ``python tools/check.py {driving,medical,remote_sensing}``.

See ``python tools/check.py --help``; the logic lives in :mod:`interlace.checks`.
"""
from interlace.checks.cli import main
from interlace.core.engine.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
