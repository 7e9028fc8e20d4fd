"""`make demo`: run every end-to-end job that exists on generated data, then print what
ran, where its outputs are, and its scores.

Examples:
  python tools/demo.py                 # everything
  python tools/demo.py --only env ops  # a subset of the steps
  python tools/demo.py --list

Each domain adds one step (generate data, train its tiny config, infer, export, score)
to STEPS below; a step is a command plus the files it leaves and a function that reads
its scores from them. Budget: about 5 minutes per domain on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
OUT = Path("work_dirs/demo")


@dataclass
class Step:
    name: str
    what: str
    command: list[str]
    outputs: list[str]
    scores: Optional[Callable[[], dict]] = None


def _ops_scores() -> dict:
    result = json.loads(Path("work_dirs/benchmarks/ops.json").read_text())
    return {row["case"]: (f"{row['ours']['median_s'] * 1e3:.0f} ms"
                          + (f", {row['speedup']:.1f}x vs {row['reference']['reference_name']}"
                             if "speedup" in row else ""))
            for row in result["rows"] if "median_s" in row["ours"]}


def _env_scores() -> dict:
    report = json.loads((OUT / "env.json").read_text())
    return {"torch": report["versions"]["torch"],
            "cuda": report["devices"]["cuda_available"],
            "mmdet3d": report["optional"]["mmdet3d"]["available"],
            "GPU spconv": report["optional"]["spconv_gpu"]}


STEPS = [
    Step("env", "environment report (python -m interlace.info)",
         [sys.executable, "-m", "interlace.info", "--save", f"{OUT}/env.json"],
         [f"{OUT}/env.json"], _env_scores),
    Step("ops", "core-ops benchmark at nuScenes scale (tools/benchmark.py ops)",
         [sys.executable, "tools/benchmark.py", "ops"],
         ["work_dirs/benchmarks/ops.json"], _ops_scores),
]


def run(steps: list[Step]) -> list[dict]:
    results = []
    for i, step in enumerate(steps, 1):
        print(f"\n=== [{i}/{len(steps)}] {step.name}: {step.what}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(step.command, cwd=ROOT).returncode
        elapsed = time.perf_counter() - start
        scores = {}
        if code == 0 and step.scores is not None:
            try:
                scores = step.scores()
            except (OSError, KeyError, ValueError) as error:
                scores = {"error": f"could not read scores: {error}"}
        results.append(dict(step=step.name, what=step.what, ok=code == 0, exit_code=code,
                            seconds=elapsed, outputs=step.outputs, scores=scores))
    return results


def summary(results: list[dict]) -> str:
    lines = ["", "=" * 72, "Interlace demo summary", "=" * 72]
    for r in results:
        status = "ok" if r["ok"] else f"FAILED (exit {r['exit_code']})"
        lines.append(f"{r['step']:<6} {status:<8} {r['seconds']:6.1f} s  {r['what']}")
        lines.append(f"       outputs: {', '.join(r['outputs'])}")
        for key, value in r["scores"].items():
            lines.append(f"       {key}: {value}")
    total = sum(r["seconds"] for r in results)
    failed = [r["step"] for r in results if not r["ok"]]
    lines.append(f"total {total:.0f} s; " + (f"failed: {', '.join(failed)}" if failed
                                              else "all steps passed"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the end-to-end demo and summarise it.",
                                     epilog=__doc__.split("\n\n", 2)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STEPS],
                        help="run only these steps")
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    args = parser.parse_args(argv)
    if args.list:
        for step in STEPS:
            print(f"{step.name:<6} {step.what}")
        return 0
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    results = run(steps)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(results, indent=2))
    print(summary(results))
    print(f"summary JSON: {OUT / 'summary.json'}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
