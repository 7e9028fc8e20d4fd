"""A dead or hung rank ends the others with a clear error within the configured timeout
(``env_cfg.dist_cfg.timeout``) instead of a hang.

The ranks are started as separate processes with the ``env://`` variables, as Slurm's
``srun`` does: under ``torchrun`` the elastic agent itself stops the other workers when one
dies, which would hide what the training process does on its own.
"""
from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mmengine.config import Config

from interlace.core.engine import cli
from tests.fixtures.tools import ROOT, TOY_CONFIG, tool_env

TIMEOUT_S = 15


def test_setup_distributed_passes_the_configured_timeout(monkeypatch):
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(cli.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend="nccl", timeout=42))))
    cli.setup_distributed(cfg, "pytorch")
    assert calls == [dict(backend="gloo", timeout=datetime.timedelta(seconds=42))]
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend="nccl"))))
    cli.setup_distributed(cfg, "pytorch")
    assert calls[-1]["timeout"] == datetime.timedelta(seconds=cli.DEFAULT_DIST_TIMEOUT_S)
    assert cfg.env_cfg.dist_cfg.timeout == cli.DEFAULT_DIST_TIMEOUT_S == 1800


def test_only_errors_of_a_live_process_group_count_as_lost_ranks():
    assert cli.distributed_failure(RuntimeError("gloo/transport: Connection reset by peer")) is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(config: Path, work_dir: Path, port: int) -> list[subprocess.Popen]:
    procs = []
    for rank in (0, 1):
        env = tool_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                       WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
        procs.append(subprocess.Popen(
            [sys.executable, "tools/train.py", str(config), "--launcher", "pytorch",
             "--work-dir", str(work_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    return procs


def _config(tmp_path: Path, fault: str) -> Path:
    path = tmp_path / "dead_rank.py"
    path.write_text(
        f'_base_ = ["{TOY_CONFIG}"]\n'
        'custom_imports = dict(imports=["tests.fixtures.toy", "tests.core.engine.fault_hooks"],'
        " allow_failed_imports=False)\n"
        f"env_cfg = dict(dist_cfg=dict(backend='gloo', timeout={TIMEOUT_S}))\n"
        f"custom_hooks = [{fault}]\n")
    return path


def _wait(condition, procs, limit: float = 400.0) -> float:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            for proc in procs:
                proc.kill()
            raise AssertionError("timed out waiting for the fault")
        time.sleep(0.05)
    return time.monotonic()


@pytest.mark.faults
@pytest.mark.parametrize("fault", ["dies", "hangs"])
def test_the_other_rank_exits_with_a_clear_error_within_the_timeout(tmp_path, fault,
                                                                    fault_report):
    marker = tmp_path / "rank1_stuck"
    hook = ("dict(type='KillRankAtIterHook', rank=1, iteration=5)" if fault == "dies" else
            f"dict(type='HangRankAtIterHook', rank=1, iteration=5, marker='{marker}')")
    procs = _launch(_config(tmp_path, hook), tmp_path / "work", _free_port())
    try:
        if fault == "dies":
            faulted = _wait(lambda: procs[1].poll() is not None, procs)
        else:
            faulted = _wait(marker.exists, procs)
        _, stderr = procs[0].communicate(timeout=TIMEOUT_S + 120)
        waited = time.monotonic() - faulted
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"rank 1 {fault} at iteration 5: rank 0 exited with {procs[0].returncode} "
          f"{waited:.1f} s later (timeout {TIMEOUT_S} s)")
    ok = procs[0].returncode == 1 and "lost contact with the other ranks" in stderr
    fault_report.record(f"train: rank 1 of 2 {fault}", survived=ok)
    assert procs[0].returncode == 1, stderr[-3000:]
    assert "error: rank 0 of 2: lost contact with the other ranks" in stderr
    # a dead peer is noticed at once; a hung one after the timeout (plus a loaded machine)
    assert waited < TIMEOUT_S + 60
