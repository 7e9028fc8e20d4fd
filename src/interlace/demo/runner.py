"""`make demo`: run every end-to-end job that exists on generated data, then print what
ran, where its outputs are, and its scores.

Examples:
  python tools/demo.py                 # everything
  python tools/demo.py --only env ops  # a subset of the steps
  python tools/demo.py --list

Each domain adds one step (generate data, train its tiny config, infer, export, score)
to STEPS below; a step is a list of commands run in order (the first failure stops it)
plus the files it leaves and a function that reads its scores from them. Budget: about
5 minutes per domain on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[3]  # the source checkout: the steps run its tools/
OUT = Path("work_dirs/demo")


@dataclass
class Step:
    """One demo job: `commands` run in order from the repository root; `outputs` are the
    files it leaves; `scores` reads its headline numbers from them."""

    name: str
    what: str
    commands: list[list[str]]
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


MEDICAL = OUT / "medical"
MEDICAL_CONFIG = "configs/medical/mgca_resnet18_minilm_synthetic_demo.py"
MEDICAL_EPOCHS = 4  # the demo config's max_epochs: its last checkpoint is epoch_4.pth


def _medical_scores() -> dict:
    probe = json.loads((MEDICAL / "linear_probe.json").read_text())
    scores = {}
    for fraction, result in probe["results"].items():
        auroc = result["mean_auroc"]
        scores[f"AUROC {float(fraction) * 100:g} % labels"] = (
            f"{auroc['mean'] * 100:.1f} ± {auroc['std'] * 100:.1f} "
            f"(mean of {len(probe['labels'])} labels, {len(probe['seeds'])} seeds)")
    return scores


REMOTE_SENSING = OUT / "remote_sensing"
DRIVING = OUT / "driving"


def _step_module_scores(folder: Path) -> Callable[[], dict]:
    """Scores of an `interlace.demo.<domain>` step, read from its scores.json."""
    def read() -> dict:
        return json.loads((folder / "scores.json").read_text())["scores"]
    return read


STEPS = [
    Step("env", "environment report (python -m interlace.info)",
         [[sys.executable, "-m", "interlace.info", "--save", f"{OUT}/env.json"]],
         [f"{OUT}/env.json"], _env_scores),
    Step("ops", "core-ops benchmark at nuScenes scale (tools/analysis_tools/benchmark.py ops)",
         [[sys.executable, "tools/analysis_tools/benchmark.py", "ops"]],
         ["work_dirs/benchmarks/ops.json"], _ops_scores),
    Step("medical", "MGCA on synthetic MIMIC-CXR: generate, pre-train (ResNet-18 + MiniLM), "
         "linear probe, export per-study probabilities",
         [[sys.executable, "tools/misc/make_synthetic.py", "medical", "--out", f"{MEDICAL}/data",
           "--studies", "300", "--seed", "0"],
          [sys.executable, "tools/train.py", MEDICAL_CONFIG, "--work-dir", f"{MEDICAL}/train",
           "--cfg-options", f"train_dataloader.dataset.data_root={MEDICAL}/data"],
          [sys.executable, "tools/analysis_tools/linear_probe.py", MEDICAL_CONFIG,
           f"{MEDICAL}/train/epoch_{MEDICAL_EPOCHS}.pth", "--data-root", f"{MEDICAL}/data",
           "--out-dir", str(MEDICAL), "--device", "cpu"]],
         [f"{MEDICAL}/linear_probe.json", f"{MEDICAL}/val_probabilities.csv",
          f"{MEDICAL}/train/epoch_{MEDICAL_EPOCHS}.pth"], _medical_scores),
    Step("remote_sensing", "SkySense on synthetic Sentinel-1/2 GeoTIFFs: generate, pre-train, "
         "fine-tune, infer a held-out tile to a COG, mIoU, PNG preview",
         [[sys.executable, "-m", "interlace.demo.remote_sensing", "--work-dir",
           str(REMOTE_SENSING)]],
         [f"{REMOTE_SENSING}/scores.json"], _step_module_scores(REMOTE_SENSING)),
    Step("driving", "DeepInteraction on a generated nuScenes set: generate, infos, train the "
         "tiny fusion config, infer per sample, submission JSON, DetectionEval, PNG",
         [[sys.executable, "-m", "interlace.demo.driving", "--work-dir", str(DRIVING)]],
         [f"{DRIVING}/scores.json", f"{DRIVING}/results_nusc.json", f"{DRIVING}/sample.png"],
         _step_module_scores(DRIVING)),
]


def _command_env() -> dict:
    """The demo's own environment plus the known third-party warnings filtered by message
    (interlace.warning_filters), so the output shows the steps, not dependency noise."""
    from interlace.warning_filters import pythonwarnings

    return dict(os.environ, PYTHONWARNINGS=pythonwarnings(os.environ.get("PYTHONWARNINGS")))


def run(steps: list[Step]) -> list[dict]:
    results = []
    env = _command_env()
    for i, step in enumerate(steps, 1):
        print(f"\n=== [{i}/{len(steps)}] {step.name}: {step.what}", flush=True)
        start = time.perf_counter()
        code = 0
        for command in step.commands:
            code = subprocess.run(command, cwd=ROOT, env=env).returncode
            if code != 0:
                break
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
        lines.append(f"{r['step']:<14} {status:<8} {r['seconds']:6.1f} s  {r['what']}")
        lines.append(f"  outputs: {', '.join(r['outputs'])}")
        for key, value in r["scores"].items():
            lines.append(f"  {key}: {value}")
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
            print(f"{step.name:<7} {step.what}")
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
