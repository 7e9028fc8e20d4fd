"""BatchInferenceEngine under faults, in process: a full or read-only disk, an output
folder removed mid-run or unwritable from the start, SIGTERM mid-write. Each leaves no
partial output, records the failure and stops cleanly with a summary; a re-run finishes
only what is missing. (Two processes and a real SIGTERM: tests/faults/.)"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from interlace.core.engine.batch_inference import (BatchInferenceEngine, JsonPredictionWriter,
                                                   OutputFolderError, TensorFileReader)
from tests.fixtures.toy import FEATURES, ToyRegressor


@pytest.fixture
def inputs(tmp_path) -> list[str]:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(5):
        np.save(folder / f"s{i}.npy", np.full(FEATURES, i, np.float32))
        paths.append(str(folder / f"s{i}.npy"))
    return paths


class _Writer(JsonPredictionWriter):
    """Writes half of the file for input `on`, then runs `action` (raise, rm, signal)."""

    def __init__(self, on: str, action) -> None:
        super().__init__()
        self.on, self.action = on, action

    def write(self, outputs, input_path, out_path) -> None:
        if Path(input_path).name != self.on:
            return super().write(outputs, input_path, out_path)
        with open(out_path, "w") as f:
            f.write('{"input": "half a fi')
        self.action(out_path)
        super().write(outputs, input_path, out_path)


def _raise(code: int):
    def action(path):
        raise OSError(code, os.strerror(code), path)
    return action


def _engine(out, writer=None) -> BatchInferenceEngine:
    return BatchInferenceEngine(ToyRegressor(), TensorFileReader(), writer or JsonPredictionWriter(),
                                str(out), show_progress=False)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if ".tmp" in p.name or p.name.endswith(".claim"))


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EROFS, "Read-only file system")])
def test_full_or_read_only_disk_stops_the_run_and_a_rerun_finishes(inputs, tmp_path, code, words):
    out = tmp_path / "out"
    summary = _engine(out, _Writer("s2.npy", _raise(code))).run(inputs)
    assert (summary.written, summary.failed, summary.not_run) == (2, 1, 2)
    assert summary.stopped.startswith(f"output folder {out} failed: OSError: [Errno {code}] {words}")
    assert summary.interrupted is None
    assert sorted(p.name for p in out.glob("*.json")) == ["s0.json", "s1.json"]
    assert _leftovers(out) == []
    failed = _records(out)[2]
    assert failed["status"] == "failed" and words in failed["error"] and "s2" in failed["error"]

    again = _engine(out).run(inputs)  # space freed: only the missing three are done
    assert (again.written, again.skipped, again.failed, again.stopped) == (3, 2, 0, None)
    for i in range(5):
        assert json.loads((out / f"s{i}.json").read_text())["input"] == inputs[i]


def test_an_input_error_that_is_not_the_folders_does_not_stop_the_run(inputs, tmp_path):
    out = tmp_path / "out"
    summary = _engine(out, _Writer("s1.npy", _raise(errno.EIO))).run(inputs)
    assert (summary.written, summary.failed, summary.not_run, summary.stopped) == (4, 1, 0, None)


def test_output_folder_removed_mid_run_stops_cleanly(inputs, tmp_path, caplog):
    out = tmp_path / "out"
    summary = _engine(out, _Writer("s2.npy", lambda path: shutil.rmtree(out))).run(inputs)
    assert summary.stopped == f"output folder {out} was removed or replaced during the run"
    assert summary.not_run == 2 and summary.written + summary.failed == 3
    # Nothing half-written anywhere; what the recreated folder holds is complete.
    if out.exists():
        assert _leftovers(out) == []
        for path in out.glob("*.json"):
            json.loads(path.read_text())
        assert not (out / "manifest.jsonl").exists()  # never appended to a foreign folder
    again = _engine(out).run(inputs)
    assert again.stopped is None and again.written + again.skipped == 5


def test_unwritable_output_folder_is_refused_before_running(inputs, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputFolderError, match=f"cannot write to the output folder {blocker}/out"):
        _engine(blocker / "out").run(inputs)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_mid_run(inputs, tmp_path):
    out = tmp_path / "out"
    summary = _engine(out, _Writer("s2.npy", lambda path: os.chmod(out, 0o555))).run(inputs)
    os.chmod(out, 0o755)
    assert summary.stopped and "not writable" in summary.stopped and _leftovers(out) == []


def test_sigterm_mid_write_removes_the_temporary_file_and_stops(inputs, tmp_path):
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)
    summary = _engine(out, _Writer("s3.npy", lambda p: os.kill(os.getpid(), signal.SIGTERM))).run(inputs)
    assert signal.getsignal(signal.SIGTERM) is before
    assert summary.interrupted == signal.SIGTERM and summary.stopped == "stopped by SIGTERM"
    assert (summary.written, summary.not_run) == (3, 2)  # s3 was in flight, s4 never began
    assert sorted(p.name for p in out.glob("*.json")) == ["s0.json", "s1.json", "s2.json"]
    assert _leftovers(out) == []
    records = _records(out)
    assert [r["status"] for r in records] == ["written"] * 3 + ["interrupted"]
    assert records[-1]["input"] == inputs[3]
    again = _engine(out).run(inputs)
    assert (again.written, again.skipped) == (2, 3)
