"""Benchmarks: time and peak memory of Interlace's ops against the naive or dense
formulation they replace, measured in the same run.

Examples:
  python tools/analysis_tools/benchmark.py ops              # nuScenes-scale sizes, ~2 minutes
  python tools/analysis_tools/benchmark.py ops --cases voxelize_hard window_attention_9x9
  python tools/analysis_tools/benchmark.py ops --scale smoke  # tiny sizes: every case runs
  python tools/analysis_tools/benchmark.py ops --no-reference --repeats 5
  python tools/analysis_tools/benchmark.py interaction      # DeepInteraction++ encoder/decoder
  python tools/analysis_tools/benchmark.py medical          # MGCA training step, features

Each implementation runs in its own child process so that its peak memory is its own:
the child builds the inputs, resets the kernel's peak-RSS mark (Linux
/proc/self/clear_refs), runs once to warm up, then `--repeats` timed runs (a first run
over 5 s is itself the measurement). "peak MiB" is
the resident-memory high-water mark above what the inputs already used. The table is
printed and written as JSON to work_dirs/benchmarks/<group>.json.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A first run longer than this is taken as the measurement, without repeats.
LONG_RUN_S = 5.0

# Benchmark groups: name -> modules of this package that define CASES.
GROUPS = {"ops": ["ops_voxelize", "ops_attention", "ops_boxes"],
          "interaction": ["interaction"],
          "medical": ["medical"],
          "driving_data": ["driving_data"],
          "remote_sensing": ["remote_sensing"],
          "driving": ["driving"]}


def load_cases(group: str) -> dict:
    cases = {}
    for module_name in GROUPS[group]:
        for case in importlib.import_module(f"{__package__}.{module_name}").CASES:
            cases[case.name] = case
    return cases


def group_reports(group: str, result: dict) -> list[str]:
    """The extra reports of a group: each of its modules may define ``report(result) -> str``
    (e.g. the driving benchmark's per-stage table); empty ones are left out."""
    texts = []
    for module_name in GROUPS[group]:
        report = getattr(importlib.import_module(f"{__package__}.{module_name}"), "report", None)
        text = report(result) if report is not None else ""
        if text:
            texts.append(text)
    return texts


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_one(group: str, name: str, impl: str, scale: str, repeats: int, threads: int) -> dict:
    """Child-process body: time one implementation of one case."""
    import torch

    torch.set_num_threads(threads)
    case = load_cases(group)[name]
    prepared = case.setup(scale)
    fn = prepared.ours if impl == "ours" else prepared.reference
    if fn is None:
        return {"skipped": True}
    baseline = _rss_mib("VmRSS")
    exact_peak = _reset_peak_rss()
    start = time.perf_counter()
    fn()  # warm-up: first-call allocations and lazy initialisation
    warm_up = time.perf_counter() - start
    if warm_up > LONG_RUN_S:
        # Seconds-long runs gain nothing from a warm-up; repeating them only costs time.
        times, repeats = [warm_up], 1
    else:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    peak = _rss_mib("VmHWM") - baseline
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": repeats,
            "peak_mib": max(peak, 0.0), "peak_exact": exact_peak,
            "reference_name": prepared.reference_name, "notes": prepared.notes}


def _child(group: str, name: str, impl: str, scale: str, repeats: int, threads: int,
           timeout: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = out.name
    cmd = [sys.executable, "-m", f"{__package__}.runner", "_child", group, name, impl, scale, str(repeats),
           str(threads), out_path]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"error": f"exit {proc.returncode}: {tail[0]}"}
        return json.loads(Path(out_path).read_text())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        Path(out_path).unlink(missing_ok=True)


def _fmt_time(result: dict) -> str:
    if "error" in result:
        return "error"
    if result.get("skipped"):
        return "-"
    return f"{result['median_s'] * 1e3:.1f}"


def run_group(group: str, scale: str, names: list[str] | None, repeats: int | None,
              threads: int, with_reference: bool, timeout: float) -> dict:
    cases = load_cases(group)
    unknown = set(names or []) - set(cases)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; known: {sorted(cases)}")
    rows = []
    for name in names or list(cases):
        case = cases[name]
        n = repeats or case.repeats
        print(f"[{len(rows) + 1}/{len(names or cases)}] {name}: {case.description}", flush=True)
        ours = _child(group, name, "ours", scale, n, threads, timeout)
        ref = (_child(group, name, "reference", scale, max(1, min(n, 2)), threads, timeout)
               if with_reference else {"skipped": True})
        row = {"case": name, "description": case.description, "ours": ours, "reference": ref}
        if "median_s" in ours and "median_s" in ref:
            row["speedup"] = ref["median_s"] / ours["median_s"]
            if ours["peak_mib"] > 0:
                row["memory_ratio"] = ref["peak_mib"] / ours["peak_mib"]
        rows.append(row)
    return {"group": group, "scale": scale, "threads": threads, "rows": rows}


def format_table(result: dict) -> str:
    header = ("case", "ours ms", "ours MiB", "reference", "ref ms", "ref MiB", "speed x", "mem x")
    lines = [header]
    for row in result["rows"]:
        ours, ref = row["ours"], row["reference"]
        ref_name = ref.get("reference_name") or ours.get("reference_name") or "-"
        lines.append((
            row["case"], _fmt_time(ours),
            f"{ours['peak_mib']:.0f}" if "peak_mib" in ours else "-",
            ref_name if not ref.get("skipped") else "-", _fmt_time(ref),
            f"{ref['peak_mib']:.0f}" if "peak_mib" in ref else "-",
            f"{row['speedup']:.1f}" if "speedup" in row else "-",
            f"{row['memory_ratio']:.1f}" if "memory_ratio" in row else "-"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    errors = [f"  {r['case']}: {side} {r[side]['error']}" for r in result["rows"]
              for side in ("ours", "reference") if "error" in r[side]]
    return "\n".join(out + (["errors:"] + errors if errors else []))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        group, name, impl, scale, repeats, threads, out = argv[1:8]
        result = run_one(group, name, impl, scale, int(repeats), int(threads))
        Path(out).write_text(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(
        description="Time Interlace's ops against the naive/dense formulation, same run.",
        epilog=__doc__.split("\n\n", 2)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("group", choices=sorted(GROUPS), help="which benchmark group")
    parser.add_argument("--cases", nargs="+", help="run only these cases")
    parser.add_argument("--scale", choices=("full", "smoke"), default="full")
    parser.add_argument("--repeats", type=int, help="timed runs per implementation")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads in each child (default: all cores)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference runs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per child")
    parser.add_argument("--out", type=Path, help="JSON path (default "
                        "work_dirs/benchmarks/<group>[-smoke].json)")
    args = parser.parse_args(argv)
    result = run_group(args.group, args.scale, args.cases, args.repeats, args.threads,
                       not args.no_reference, args.timeout)
    import torch
    result["machine"] = {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                         "cuda": torch.cuda.is_available(), "date": time.strftime("%Y-%m-%d %H:%M")}
    suffix = "" if args.scale == "full" else f"-{args.scale}"
    out = args.out or Path("work_dirs/benchmarks") / f"{args.group}{suffix}.json"
    from interlace.core.engine.atomic_files import write_json_atomic  # torch-free parent until here
    write_json_atomic(out, result)
    print()
    print(format_table(result))
    for text in group_reports(args.group, result):
        print("\n" + text)
    print(f"\nspeed x = reference time / ours; mem x = reference peak / ours "
          f"(same run, {args.threads} threads). JSON: {out}")
    failed = any("error" in r["ours"] for r in result["rows"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
