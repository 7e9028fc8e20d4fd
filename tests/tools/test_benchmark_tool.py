"""`benchmark.py ops` runs every ops case (tiny sizes here) and writes a JSON table."""
import json

import pytest

from tests.fixtures.tools import run_tool

BENCHMARK = "tools/analysis_tools/benchmark.py"


def test_ops_benchmark_smoke_runs_every_case_against_its_reference(tmp_path):
    out = tmp_path / "ops.json"
    proc = run_tool(BENCHMARK, "ops", "--scale", "smoke", "--repeats", "1",
                    "--threads", "1", "--out", out, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads(out.read_text())
    cases = {row["case"] for row in result["rows"]}
    assert {"voxelize_hard", "sampled_attention", "window_attention_9x9",
            "bev_iou_rotated"} <= cases
    for row in result["rows"]:
        assert "median_s" in row["ours"], row
        assert "median_s" in row["reference"], row
        assert row["speedup"] > 0
    assert "speed x" in proc.stdout and str(out) in proc.stdout


def test_unknown_case_is_rejected_with_the_known_names():
    proc = run_tool(BENCHMARK, "ops", "--cases", "nope", "--scale", "smoke")
    assert proc.returncode != 0 and "known:" in proc.stderr


@pytest.mark.slow  # eleven child processes, each importing the whole stack
def test_interaction_benchmark_smoke_runs_fp32_and_bf16_forward_and_backward(tmp_path):
    out = tmp_path / "interaction.json"
    proc = run_tool(BENCHMARK, "interaction", "--scale", "smoke", "--repeats", "1",
                    "--threads", "1", "--out", out, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = {row["case"]: row for row in json.loads(out.read_text())["rows"]}
    for component in ("encoder", "decoder"):
        for mode in ("fwd", "fwd_bwd"):
            for dtype in ("fp32", "bf16"):
                assert "median_s" in rows[f"{component}_{mode}_{dtype}"]["ours"]
    for size in ("20k", "80k"):
        assert rows[f"alignment_{size}"]["speedup"] > 0


def test_medical_benchmark_smoke_runs_every_case(tmp_path):
    out = tmp_path / "medical.json"
    proc = run_tool(BENCHMARK, "medical", "--scale", "smoke", "--repeats", "1",
                    "--threads", "1", "--out", out, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = {row["case"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"mgca_train_step_resnet50", "mgca_train_step_vitb16",
                         "linear_probe_extract_resnet50"}
    assert all("median_s" in row["ours"] for row in rows.values())
