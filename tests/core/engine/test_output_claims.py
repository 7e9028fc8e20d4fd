"""Claim files: exclusive creation, release, stale takeover (dead pid, old claim,
unreadable claim), and the engine leaving an output claimed by a live process alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from interlace.core.engine.batch_inference import (BatchInferenceEngine, JsonPredictionWriter,
                                                   TensorFileReader)
from interlace.core.engine.output_claims import ClaimHeld, OutputClaims, claim_path, pid_alive
from tests.fixtures.toy import FEATURES, ToyRegressor


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_claim(path: str, pid: int, host: str, age_s: float = 0.0) -> None:
    Path(path).write_text(json.dumps(dict(pid=pid, host=host, time=time.time() - age_s,
                                          token="someone-else")))


def test_claim_is_exclusive_and_released(tmp_path):
    out = str(tmp_path / "a.json")
    claims = OutputClaims()
    assert claims.acquire(out) is None
    content = json.loads(Path(claim_path(out)).read_text())
    assert content["pid"] == os.getpid() and content["host"] == claims.host
    assert set(content) == {"pid", "host", "time", "token"}
    with pytest.raises(ClaimHeld, match=f"a.json is being written by pid {os.getpid()}"):
        claims.acquire(out)
    claims.release(out)
    assert not Path(claim_path(out)).exists()
    assert claims.acquire(out) is None


def test_own_pid_claim_left_by_an_earlier_process_is_stale(tmp_path):
    """Pid 1 in a container, restarted: the same pid on the same host, not our claim."""
    out = str(tmp_path / "a.json")
    claims = OutputClaims()
    _write_claim(claim_path(out), os.getpid(), claims.host)
    assert claims.acquire(out).token == "someone-else"


def test_live_claim_of_another_process_is_respected(tmp_path):
    out = str(tmp_path / "a.json")
    claims = OutputClaims()
    _write_claim(claim_path(out), os.getppid(), claims.host)  # the parent: alive
    with pytest.raises(ClaimHeld, match=f"pid {os.getppid()} on {claims.host}"):
        claims.acquire(out)
    assert json.loads(Path(claim_path(out)).read_text())["token"] == "someone-else"


def test_claim_of_a_dead_pid_on_this_host_is_taken_over(tmp_path):
    out = str(tmp_path / "a.json")
    claims = OutputClaims()
    dead = _dead_pid()
    assert not pid_alive(dead)
    _write_claim(claim_path(out), dead, claims.host)
    taken = claims.acquire(out)
    assert taken is not None and taken.pid == dead
    assert json.loads(Path(claim_path(out)).read_text())["pid"] == os.getpid()
    assert not Path(claim_path(out) + ".takeover").exists()


def test_claim_from_another_host_is_taken_over_only_after_the_timeout(tmp_path):
    out = str(tmp_path / "a.json")
    _write_claim(claim_path(out), 1, "other-host", age_s=10.0)
    with pytest.raises(ClaimHeld, match="other-host"):
        OutputClaims(stale_after_s=60.0).acquire(out)
    assert OutputClaims(stale_after_s=5.0).acquire(out).host == "other-host"


def test_unreadable_claim_is_taken_over_once_old(tmp_path):
    out = str(tmp_path / "a.json")
    Path(claim_path(out)).write_bytes(b"")  # killed between create and write
    with pytest.raises(ClaimHeld, match="unreadable claim"):
        OutputClaims().acquire(out)
    old = time.time() - 120
    os.utime(claim_path(out), (old, old))
    assert OutputClaims().acquire(out).pid == -1


def test_release_leaves_a_claim_taken_over_by_someone_else(tmp_path):
    out = str(tmp_path / "a.json")
    claims = OutputClaims()
    claims.acquire(out)
    _write_claim(claim_path(out), os.getppid(), claims.host)  # replaced meanwhile
    claims.release(out)
    assert Path(claim_path(out)).exists()


def test_stale_after_must_be_positive():
    with pytest.raises(ValueError, match="stale_after_s"):
        OutputClaims(stale_after_s=0)


def test_engine_skips_an_output_a_live_process_claimed_and_takes_a_dead_ones(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    inputs = []
    for i in range(3):
        np.save(folder / f"s{i}.npy", np.zeros(FEATURES, np.float32))
        inputs.append(str(folder / f"s{i}.npy"))
    host = OutputClaims().host
    _write_claim(claim_path(str(out / "s0.json")), os.getppid(), host)
    dead = _dead_pid()
    _write_claim(claim_path(str(out / "s1.json")), dead, host)
    (out / f".s1.tmp-{dead}-0badf00d.json").write_text('{"half')  # left mid-write
    engine = BatchInferenceEngine(ToyRegressor(), TensorFileReader(), JsonPredictionWriter(),
                                  str(out), show_progress=False)
    summary = engine.run(inputs)
    assert (summary.written, summary.claimed, summary.failed) == (2, 1, 0)
    assert summary.total == 3 and summary.stopped is None
    assert not (out / "s0.json").exists() and (out / "s1.json").is_file()
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert records[0]["status"] == "claimed" and f"pid {os.getppid()}" in records[0]["claimed_by"]
    assert records[1]["status"] == "written" and "pid" in records[1]["took_over"]
    assert not (out / f".s1.tmp-{dead}-0badf00d.json").exists()  # the dead run's temporary
    # Only the live process's claim is left; ours are released.
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".claim")) == [".s0.json.claim"]
