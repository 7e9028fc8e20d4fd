"""tools/demo.py (`make demo`) runs its steps and ends with a summary of outputs and scores."""
import csv
import json
import re

import pytest

from tests.fixtures.tools import ROOT, run_tool


def test_demo_lists_its_steps():
    proc = run_tool("tools/demo.py", "--list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert names[0] == "env" and {"ops", "medical"} <= set(names)


def test_demo_env_step_prints_a_summary_with_outputs_and_scores():
    proc = run_tool("tools/demo.py", "--only", "env")
    assert proc.returncode == 0, proc.stderr[-2000:]
    tail = proc.stdout[proc.stdout.index("Interlace demo summary"):]
    assert re.search(r"^env +ok ", tail, re.MULTILINE)
    assert "outputs: work_dirs/demo/env.json" in tail
    assert "torch: " in tail and "all steps passed" in tail
    summary = json.loads((ROOT / "work_dirs/demo/summary.json").read_text())
    assert [s["step"] for s in summary] == ["env"] and summary[0]["ok"]


def test_a_failing_command_stops_its_step_and_fails_the_demo(tmp_path):
    from interlace.demo import runner as demo

    marker = tmp_path / "ran"
    step = demo.Step("broken", "a step whose first command fails",
                     [["python", "-c", "import sys; sys.exit(3)"],
                      ["python", "-c", f"open({str(marker)!r}, 'w')"]], [])
    [result] = demo.run([step])
    assert not result["ok"] and result["exit_code"] == 3
    assert not marker.exists()  # the second command never ran
    assert "FAILED (exit 3)" in demo.summary([result])


@pytest.mark.slow
def test_demo_medical_step_pretrains_probes_and_exports_within_its_budget():
    proc = run_tool("tools/demo.py", "--only", "medical", timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    summary = json.loads((ROOT / "work_dirs/demo/summary.json").read_text())
    [medical] = summary
    assert medical["ok"] and medical["seconds"] < 300
    assert any(key.startswith("AUROC 1 %") for key in medical["scores"])
    with (ROOT / "work_dirs/demo/medical/val_probabilities.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and "Pleural Effusion" in rows[0]
    assert all(0.0 <= float(row["Pleural Effusion"]) <= 1.0 for row in rows)
