"""tools/analysis_tools/linear_probe.py end to end on a small synthetic MIMIC-CXR set
(subprocess)."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.tools import run_tool

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "analysis_tools" / "linear_probe.py"
CONFIG = "configs/medical/mgca_resnet18_synthetic_tiny.py"


def _run(*args, timeout: int = 180) -> subprocess.CompletedProcess:
    return run_tool("tools/analysis_tools/linear_probe.py", *args, timeout=timeout)


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    from interlace.domains.medical.data.synthetic import make_synthetic_mimic

    root = tmp_path_factory.mktemp("mimic")
    make_synthetic_mimic(root, studies=60, seed=0, min_size=96, max_size=128)
    return root


def test_random_init_probe_writes_table_json_and_csv(mimic, tmp_path):
    out = tmp_path / "probe"
    result = _run(CONFIG, "none", "--random-init", "--data-root", mimic, "--fractions", "1.0",
                  "--seeds", "0", "--out-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Linear probe AUROC" in result.stdout
    assert "100 %" in result.stdout and "mean" in result.stdout
    payload = json.loads((out / "linear_probe.json").read_text())
    assert payload["random_init"] is True and payload["fractions"] == [1.0]
    labels = payload["labels"]
    assert labels and set(labels) <= {"Lung Opacity", "Pleural Effusion", "Cardiomegaly",
                                      "Support Devices", "No Finding"}
    # Labels left out are named with the reason, in the output and the JSON.
    for name, reason in payload["labels_skipped"].items():
        assert f"skipping {name}: {reason}" in result.stdout
    assert set(labels) | set(payload["labels_skipped"]) == set(payload["labels_requested"])
    summary = payload["results"]["1.0"]["mean_auroc"]
    assert 0.0 <= summary["mean"] <= 1.0 and summary["std"] == 0.0
    with open(out / "val_probabilities.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["study_id", *labels]
    assert len(rows) - 1 == payload["num_validate"] > 0
    assert all(0.0 <= float(v) <= 1.0 for row in rows[1:] for v in row[1:])
    assert sorted(p.name for p in out.iterdir()) == ["linear_probe.json",
                                                      "val_probabilities.csv"]


def test_missing_data_root_exits_2(tmp_path):
    missing = tmp_path / "no_such_mimic"
    result = _run(CONFIG, "none", "--random-init", "--data-root", missing)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0]


def test_missing_checkpoint_exits_2(mimic, tmp_path):
    missing = tmp_path / "epoch_3.pth"
    result = _run(CONFIG, missing, "--data-root", mimic)
    assert result.returncode == 2
    assert str(missing) in result.stderr.strip().splitlines()[-1]


def test_help_has_an_example():
    result = _run("--help")
    assert result.returncode == 0
    assert "--random-init" in result.stdout and "example" in result.stdout.lower()
