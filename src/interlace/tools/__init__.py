"""The code of the command-line tools: each module holds one tool's argument parsing and
``main(argv) -> int``; the scripts under `tools/` (laid out as mmdet3d's) only call it, so
that tests, the demo and other code import a tool's functions as package modules."""
