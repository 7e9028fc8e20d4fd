"""Demo steps that are more than a list of commands: each module exposes
``run(work_dir: Path) -> dict`` returning its scores and output paths (see tools/demo.py)."""
