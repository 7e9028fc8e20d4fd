"""tools/demo.py (`make demo`) runs its steps and ends with a summary of outputs and scores."""
import json

from tests.fixtures.tools import ROOT, run_tool


def test_demo_lists_its_steps():
    proc = run_tool("tools/demo.py", "--list")
    assert proc.returncode == 0
    assert proc.stdout.split()[0] == "env" and "ops" in proc.stdout


def test_demo_env_step_prints_a_summary_with_outputs_and_scores():
    proc = run_tool("tools/demo.py", "--only", "env")
    assert proc.returncode == 0, proc.stderr[-2000:]
    tail = proc.stdout[proc.stdout.index("Interlace demo summary"):]
    assert "env    ok" in tail and "outputs: work_dirs/demo/env.json" in tail
    assert "torch: " in tail and "all steps passed" in tail
    summary = json.loads((ROOT / "work_dirs/demo/summary.json").read_text())
    assert [s["step"] for s in summary] == ["env"] and summary[0]["ok"]
