"""`benchmark.py driving_data`: the data-loading benchmark runs at smoke scale and
writes its JSON table."""
import json

import pytest

from tests.fixtures.tools import run_tool

BENCHMARK = "tools/analysis_tools/benchmark.py"


def _run(tmp_path, *cases):
    out = tmp_path / "driving_data.json"
    extra = ["--cases", *cases] if cases else []
    proc = run_tool(BENCHMARK, "driving_data", "--scale", "smoke", "--repeats", "1",
                    "--threads", "1", "--no-reference", *extra, "--out", out, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "pipeline_workers0" in proc.stdout and str(out) in proc.stdout
    return {row["case"]: row for row in json.loads(out.read_text())["rows"]}


def test_driving_data_benchmark_smoke_times_the_single_process_loader(tmp_path):
    rows = _run(tmp_path, "pipeline_workers0")
    ours = rows["pipeline_workers0"]["ours"]
    assert ours["median_s"] > 0 and ours["peak_mib"] >= 0
    assert "samples/s = 4 / time" in ours["notes"] and "last run" in ours["notes"]


@pytest.mark.slow
def test_driving_data_benchmark_smoke_runs_both_cases_and_reports_worker_memory(tmp_path):
    rows = _run(tmp_path)
    assert set(rows) == {"pipeline_workers0", "pipeline_workers2"}
    assert all("median_s" in row["ours"] for row in rows.values())
    assert "worker VmHWM MiB" in rows["pipeline_workers2"]["ours"]["notes"]
