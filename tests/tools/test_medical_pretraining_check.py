"""tools/medical_pretraining_check.py: generate, pre-train, probe, localise, report."""
import json

import pytest

from tests.fixtures.tools import run_tool


def test_help_shows_an_example():
    proc = run_tool("tools/medical_pretraining_check.py", "--help")
    assert proc.returncode == 0
    assert "--budget-min" in proc.stdout
    assert "python tools/medical_pretraining_check.py --studies" in proc.stdout


def test_lr_follows_warm_up_then_cosine_over_the_budget():
    from tests.fixtures.tools import load_tool

    tool = load_tool("medical_pretraining_check")
    assert tool._lr_factor(0.0, 0.1) == pytest.approx(0.01)
    assert tool._lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert tool._lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert tool._lr_factor(1.0, 0.1) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_tiny_run_writes_the_table_json_and_heat_map(tmp_path):
    proc = run_tool("tools/medical_pretraining_check.py", "--studies", "120",
                    "--image-size", "128", "--budget-min", "0.3", "--fractions", "0.1", "1.0",
                    "--seeds", "0", "--out", tmp_path, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Linear probe mean AUROC" in proc.stdout and "Token attention" in proc.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result["runs"]) == {"mgca", "convirt", "random"}
    assert result["runs"]["mgca"]["training"]["steps"] > 0
    assert "opacity:finding" in result["localisation"]["words"]
    assert (tmp_path / "token_attention.png").stat().st_size > 1000
