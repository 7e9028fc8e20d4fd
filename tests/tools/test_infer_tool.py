"""tools/infer.py: end to end in a subprocess, plus its input expansion and error paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interlace.core.engine.cli import ToolError, run_cli
from tests.fixtures.tools import load_tool, run_tool
from tests.fixtures.toy import FEATURES, ToyRegressor

CONFIG = "tests/fixtures/toy_config.py"


def _run(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    return run_tool("tools/infer.py", *args, timeout=timeout)


@pytest.fixture(autouse=True)
def _restore_local_rank(monkeypatch):
    """The tool sets LOCAL_RANK when it is missing; keep that out of other tests."""
    monkeypatch.setenv("LOCAL_RANK", os.environ.get("LOCAL_RANK", "0"))


@pytest.fixture(scope="module")
def infer_tool():
    return load_tool("infer")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "toy.pth"
    torch.save({"meta": {"epoch": 2}, "state_dict": ToyRegressor().state_dict()}, path)
    return path


@pytest.fixture
def in_dir(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"v{i}.npy", np.full(FEATURES, i, np.float32))
    (folder / "broken.npy").write_bytes(b"not an array")
    (folder / ".hidden.npy").write_bytes(b"skipped: hidden")
    return folder


def test_infer_writes_outputs_and_prints_summary(checkpoint, in_dir, tmp_path):
    out = tmp_path / "out"
    proc = _run(CONFIG, checkpoint, in_dir, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.json")) == ["v0.json", "v1.json", "v2.json"]
    assert "inputs: 4  written: 3  skipped: 0  failed: 1" in proc.stdout
    assert f"manifest: {out / 'manifest.jsonl'}" in proc.stdout
    assert "broken.npy" in proc.stdout.split("failed inputs:")[1]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 4 and ".hidden.npy" not in str(records)


def test_unknown_model_type_exits_2_with_a_suggestion(checkpoint, in_dir, tmp_path):
    proc = _run(CONFIG, checkpoint, in_dir, "--out", tmp_path / "out",
                "--cfg-options", "model.type=ToyRegresor")
    assert proc.returncode == 2
    assert "'ToyRegresor'" in proc.stderr and "Did you mean: ToyRegressor" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_help_shows_an_example():
    proc = _run("--help")
    assert proc.returncode == 0
    assert "Examples:" in proc.stdout and "python tools/infer.py" in proc.stdout
    assert "--out DIR" in proc.stdout and "@list.txt" in proc.stdout


def test_missing_checkpoint_is_a_one_line_error(infer_tool, in_dir, tmp_path, capsys):
    missing = tmp_path / "epoch_9.pth"
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: infer_tool.main([CONFIG, str(missing), str(in_dir), "--out",
                                         str(tmp_path / "out")]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: checkpoint not found: {missing}"


def test_state_dict_mismatch_is_a_one_line_error(infer_tool, in_dir, tmp_path, capsys):
    wrong = tmp_path / "wrong.pth"
    torch.save({"linear.weight": torch.zeros(1, FEATURES + 1)}, wrong)
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: infer_tool.main([CONFIG, str(wrong), str(in_dir), "--out",
                                         str(tmp_path / "out")]))
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err
    assert "wrong.pth" in err and "shape-mismatched" in err and "missing 1" in err


def test_exit_code_is_1_when_every_input_failed(infer_tool, checkpoint, in_dir, tmp_path, capsys):
    code = infer_tool.main([CONFIG, str(checkpoint), str(in_dir / "broken.npy"),
                            "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert "failed: 1" in capsys.readouterr().out


def test_inputs_expand_from_dirs_globs_and_list_files(infer_tool, in_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("list.txt").write_text("# chosen\nin/v2.npy\n\nin/v0.npy\n")
    expanded = infer_tool.expand_inputs(["@list.txt", "in/v*.npy", "in"])
    assert expanded == ["in/v2.npy", "in/v0.npy", "in/v1.npy", "in/broken.npy"]
    with pytest.raises(ToolError, match="matched no files: in/\\*.tif"):
        infer_tool.expand_inputs(["in/*.tif"])
    with pytest.raises(ToolError, match="input not found: nope.npy"):
        infer_tool.expand_inputs(["nope.npy"])
