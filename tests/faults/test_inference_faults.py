"""Fault injection on tools/infer.py, in real processes: two runs on one output folder,
SIGTERM mid-write, a dead run's claims, a full / read-only / removed output folder.

Every test checks the outputs the same way (:func:`_check_outputs`): each output that
exists parses and belongs to its input, no temporary or claim file is left, the manifest
is valid JSON lines; and reports through ``fault_report``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from interlace.tools.infer import main as infer_main
from tests.fixtures.tools import ROOT, tool_env
from tests.fixtures.toy import FEATURES, ToyRegressor

pytestmark = pytest.mark.faults

CONFIG = "tests/faults/infer_fault_config.py"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "toy.pth"
    torch.save({"state_dict": ToyRegressor().state_dict()}, path)
    return path


def _inputs(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(n):
        np.save(folder / f"s{i:03d}.npy", np.full(FEATURES, i, np.float32))
        paths.append(folder / f"s{i:03d}.npy")
    return paths


def _infer(checkpoint, inputs_dir, out, *options) -> subprocess.Popen:
    cmd = [sys.executable, "tools/infer.py", CONFIG, str(checkpoint), str(inputs_dir),
           "--out", str(out), "--no-progress", *map(str, options)]
    return subprocess.Popen(cmd, cwd=ROOT, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _rerun(checkpoint, inputs_dir, out, capsys) -> tuple[int, str]:
    """The same command again, in this process (the fault is gone): (exit code, stdout)."""
    capsys.readouterr()
    code = infer_main([CONFIG, str(checkpoint), str(inputs_dir), "--out", str(out),
                       "--no-progress"])
    return code, capsys.readouterr().out


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _manifest(out: Path) -> list[dict]:
    """Every manifest line, parsed (a torn or interleaved line fails the test)."""
    text = (out / "manifest.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n"), "manifest ends in a partial line"
    return [json.loads(line) for line in text.splitlines()]


def _check_outputs(out: Path, inputs: list[Path]) -> tuple[int, int]:
    """(outputs present and whole, outputs corrupt); asserts nothing temporary is left."""
    leftovers = sorted(p.name for p in out.rglob(".*") if p.is_file())
    assert leftovers == [], f"left behind: {leftovers}"
    whole = corrupt = 0
    for path in inputs:
        target = out / f"{path.stem}.json"
        if not target.exists():
            continue
        try:
            payload = json.loads(target.read_text())
            assert payload["input"] == str(path)
            assert payload["predictions"][0]["pred"] == pytest.approx(
                _expected(int(path.stem[1:])), rel=1e-5)
            whole += 1
        except (ValueError, KeyError, AssertionError):
            corrupt += 1
    return whole, corrupt


_MODEL = ToyRegressor()


def _expected(i: int) -> float:
    with torch.no_grad():
        return _MODEL.linear(torch.full((FEATURES,), float(i))).item()


@pytest.fixture(autouse=True)
def _restore_local_rank(monkeypatch):
    """The tool sets LOCAL_RANK when it is missing (in-process re-runs)."""
    monkeypatch.setenv("LOCAL_RANK", os.environ.get("LOCAL_RANK", "0"))


@pytest.fixture(autouse=True)
def _same_weights(checkpoint):
    _MODEL.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])


def test_two_processes_share_one_output_folder(checkpoint, tmp_path, fault_report):
    inputs = _inputs(tmp_path / "in", 40)
    out = tmp_path / "out"
    pace = ["--cfg-options", "infer_cfg.reader.delay_s=0.05", "infer_cfg.writer.write_delay_s=0.02",
            f"infer_cfg.reader.rendezvous={tmp_path / 'meet'}", "infer_cfg.reader.peers=2"]
    procs = [_infer(checkpoint, tmp_path / "in", out, *pace) for _ in range(2)]
    results = [_finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    records = _manifest(out)
    written = [r["input"] for r in records if r["status"] == "written"]
    by_pid: dict[int, int] = {}
    whole, corrupt = _check_outputs(out, inputs)
    # Each input written exactly once, by one of the two runs; both did part of the work.
    assert sorted(written) == sorted(map(str, inputs))
    for proc, (_, stdout, _) in zip(procs, results):
        by_pid[proc.pid] = int(stdout.split("written: ")[1].split()[0])
    assert sum(by_pid.values()) == 40 and min(by_pid.values()) > 0, by_pid
    lost = 40 - whole + corrupt
    fault_report.record("infer: two processes, one output folder", survived=lost == 0, lost=lost)
    assert (whole, corrupt) == (40, 0)


def test_sigterm_mid_run_then_rerun_finishes_only_what_is_missing(checkpoint, tmp_path,
                                                                  fault_report, capsys):
    inputs = _inputs(tmp_path / "in", 30)
    out = tmp_path / "out"
    proc = _infer(checkpoint, tmp_path / "in", out, "--cfg-options",
                  "infer_cfg.writer.write_delay_s=0.3")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait until a few are done and one is mid-write
        done = len(list(out.glob("s*.json"))) if out.exists() else 0
        if done >= 3 and list(out.glob(".s*.tmp*")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    code, stdout, stderr = _finish(proc)
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped early: stopped by SIGTERM" in stdout
    records = _manifest(out)
    assert records[-1]["status"] == "interrupted"
    first_whole, corrupt = _check_outputs(out, inputs)
    assert corrupt == 0 and 3 <= first_whole < 30

    code, stdout = _rerun(checkpoint, tmp_path / "in", out, capsys)
    assert code == 0
    assert f"written: {30 - first_whole}  skipped: {first_whole}  failed: 0" in stdout
    whole, corrupt = _check_outputs(out, inputs)
    lost = 30 - whole + corrupt
    fault_report.record("infer: SIGTERM mid-write, then re-run", survived=lost == 0, lost=lost)
    assert (whole, corrupt) == (30, 0)


def test_sigkill_leaves_claims_that_the_next_run_takes_over(checkpoint, tmp_path, fault_report,
                                                            capsys):
    inputs = _inputs(tmp_path / "in", 12)
    out = tmp_path / "out"
    proc = _infer(checkpoint, tmp_path / "in", out, "--cfg-options",
                  "infer_cfg.writer.write_delay_s=0.3")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (out.exists() and list(out.glob(".*.claim"))):
        time.sleep(0.02)
    proc.kill()  # no cleanup at all: the claim (and perhaps a temporary file) stay
    proc.communicate()
    stale = [p.name for p in out.glob(".*.claim")]
    assert stale, "the killed run held no claim"
    code, stdout = _rerun(checkpoint, tmp_path / "in", out, capsys)
    assert code == 0 and "claimed by another run" not in stdout, stdout
    took_over = [r for r in _manifest(out) if "took_over" in r]
    assert len(took_over) == len(stale) and f"pid {proc.pid}" in took_over[0]["took_over"]
    # A temporary file the killed run left mid-write went with its claim.
    whole, corrupt = _check_outputs(out, inputs)
    lost = 12 - whole + corrupt
    fault_report.record("infer: SIGKILL, stale claims taken over", survived=lost == 0, lost=lost)
    assert (whole, corrupt) == (12, 0)


@pytest.mark.parametrize("fault, option, reason", [
    ("disk full", "infer_cfg.writer.fail_on=[s004.npy]", "No space left on device"),
    ("read-only folder", "infer_cfg.writer.fail_on=[s004.npy] infer_cfg.writer.fail_errno=EROFS",
     "Read-only file system"),
    ("output folder removed", "infer_cfg.writer.remove_folder_on=[s004.npy]",
     "was removed or replaced during the run"),
])
def test_output_folder_failure_stops_cleanly_with_a_summary(checkpoint, tmp_path, fault_report,
                                                            capsys, fault, option, reason):
    inputs = _inputs(tmp_path / "in", 10)
    out = tmp_path / "out"
    code, stdout, stderr = _finish(_infer(checkpoint, tmp_path / "in", out, "--cfg-options",
                                          *option.split()))
    assert code == 3, stdout + stderr[-2000:]
    assert "stopped early:" in stdout and reason in stdout and "inputs not run" in stdout
    whole, corrupt = _check_outputs(out, inputs) if out.exists() else (0, 0)
    if fault != "output folder removed":
        records = _manifest(out)
        assert records[-1]["status"] == "failed" and reason in records[-1]["error"]
        assert whole == 4  # s000..s003 before the fault, nothing after
    # The fault gone, the same command finishes the rest.
    code, _ = _rerun(checkpoint, tmp_path / "in", out, capsys)
    assert code == 0
    whole_after, corrupt_after = _check_outputs(out, inputs)
    lost = corrupt + corrupt_after + (10 - whole_after) + (4 - whole if fault != "output folder removed" else 0)
    fault_report.record(f"infer: {fault}", survived=lost == 0, lost=lost)
    assert (whole_after, corrupt, corrupt_after) == (10, 0, 0)
