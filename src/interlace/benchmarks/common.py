"""What a benchmark case is. Each `interlace.benchmarks.<group>` module defines
``CASES: list[BenchCase]``; `tools/analysis_tools/benchmark.py <group>` times them. A
module may also define ``report(result: dict) -> str``, which the runner prints after its
table (the driving benchmark's per-stage breakdown).

A case's ``setup(scale)`` builds its inputs once and returns a :class:`Prepared` with two
zero-argument callables: ``ours`` (the Interlace implementation) and ``reference`` (the
naive or dense formulation it replaces, or None). ``scale`` is ``"full"`` (the
nuScenes-scale sizes the issue asks for) or ``"smoke"`` (tiny, for the test suite).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Prepared:
    ours: Callable[[], object]
    reference: Optional[Callable[[], object]] = None
    reference_name: str = "reference"
    notes: str = ""


@dataclass
class BenchCase:
    name: str                     # e.g. "voxelize_hard"
    description: str              # e.g. "hard voxelisation of 300k points, 0.075 m voxels"
    setup: Callable[[str], Prepared]
    repeats: int = 3
    tags: list[str] = field(default_factory=list)
