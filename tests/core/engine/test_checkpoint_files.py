"""Checkpoints on disk: atomic saves, and --resume past a truncated or corrupt latest
checkpoint (with no path) or refusing it (with a path)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from interlace.core.engine.checkpoint import CheckpointError
from interlace.core.engine.checkpoint_files import (checkpoint_problem,
                                                    install_atomic_checkpoint_saver,
                                                    resumable_checkpoint, save_checkpoint_atomic)
from interlace.core.engine.cli import apply_resume
from tests.fixtures.tools import TOY_CONFIG, run_tool


def _checkpoint(path: Path, iteration: int, age: float = 0.0) -> Path:
    """A small mmengine-shaped checkpoint, modified `age` seconds ago."""
    torch.save({"meta": {"epoch": 0, "iter": iteration},
                "state_dict": {"w": torch.full((4,), float(iteration))}}, path)
    stamp = path.stat().st_mtime - age
    os.utime(path, (stamp, stamp))
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _work_dir(tmp_path: Path) -> Path:
    """iter_5 (oldest), iter_10, iter_15 (newest, recorded in last_checkpoint)."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    for iteration, age in ((5, 30), (10, 20), (15, 10)):
        _checkpoint(work_dir / f"iter_{iteration}.pth", iteration, age)
    (work_dir / "last_checkpoint").write_text(str(work_dir / "iter_15.pth"))
    return work_dir


# --- atomic saves ------------------------------------------------------------------------

def test_runner_saves_go_through_the_atomic_writer():
    from mmengine.runner import runner as runner_module

    install_atomic_checkpoint_saver()
    assert runner_module.save_checkpoint is save_checkpoint_atomic
    assert install_atomic_checkpoint_saver() is False


def test_a_save_that_fails_midway_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = _checkpoint(tmp_path / "iter_10.pth", 10)
    before = path.read_bytes()
    real_save = torch.save

    def dies_halfway(obj, stream, *args, **kwargs):
        stream.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill arriving mid-write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint_atomic({"meta": {}, "state_dict": {}}, str(path))
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before and checkpoint_problem(str(path)) is None
    assert [p.name for p in tmp_path.iterdir()] == ["iter_10.pth"]  # no temporary left


def test_atomic_save_writes_a_loadable_file_with_the_umask_permissions(tmp_path):
    path = tmp_path / "sub" / "iter_1.pth"
    save_checkpoint_atomic({"meta": {"iter": 1}, "state_dict": {"w": torch.ones(2)}}, str(path))
    assert checkpoint_problem(str(path)) is None
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# --- choosing what to resume from ---------------------------------------------------------

def test_a_valid_latest_checkpoint_is_used_and_nothing_is_logged(tmp_path):
    work_dir = _work_dir(tmp_path)
    logged: list[str] = []
    assert resumable_checkpoint(work_dir, log=logged.append) == str(work_dir / "iter_15.pth")
    assert logged == []


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_a_bad_latest_checkpoint_falls_back_to_the_newest_valid_one(tmp_path, damage):
    work_dir = _work_dir(tmp_path)
    latest = work_dir / "iter_15.pth"
    if damage == "truncated":
        _truncate(latest)
    elif damage == "garbage":
        latest.write_bytes(os.urandom(2048))
    elif damage == "empty":
        latest.write_bytes(b"")
    else:
        latest.unlink()
    logged: list[str] = []
    assert resumable_checkpoint(work_dir, log=logged.append) == str(work_dir / "iter_10.pth")
    text = "\n".join(logged)
    assert f"cannot resume from {latest}" in text  # the bad file, named
    reason = {"truncated": "cannot be read by torch.load", "garbage": "cannot be read by torch.load",
              "empty": "the file is empty", "missing": "does not exist"}[damage]
    assert reason in text  # and why
    assert f"resuming from {work_dir / 'iter_10.pth'}, the newest valid checkpoint" in text


def test_two_bad_files_are_both_passed_over(tmp_path):
    work_dir = _work_dir(tmp_path)
    _truncate(work_dir / "iter_15.pth")
    (work_dir / "iter_10.pth").write_bytes(b"not a checkpoint")
    logged: list[str] = []
    assert resumable_checkpoint(work_dir, log=logged.append) == str(work_dir / "iter_5.pth")
    assert sum("cannot resume from" in line for line in logged) == 2


def test_an_empty_or_missing_record_falls_back_to_the_newest_checkpoint(tmp_path):
    work_dir = _work_dir(tmp_path)
    (work_dir / "last_checkpoint").write_text("")  # killed while mmengine rewrote it
    logged: list[str] = []
    assert resumable_checkpoint(work_dir, log=logged.append) == str(work_dir / "iter_15.pth")
    assert "last_checkpoint is empty" in logged[0]
    (work_dir / "last_checkpoint").unlink()
    assert resumable_checkpoint(work_dir, log=logged.append) == str(work_dir / "iter_15.pth")


def test_hidden_temporaries_and_non_checkpoints_are_not_resumed_from(tmp_path):
    work_dir = _work_dir(tmp_path)
    _truncate(work_dir / "iter_15.pth")
    torch.save({"w": torch.ones(1)}, work_dir / "weights_only.pth")  # a bare state dict
    (work_dir / ".iter_20.tmp-1-ab.pth").write_bytes(b"PK half")  # a killed writer's temp
    logged: list[str] = []
    assert resumable_checkpoint(work_dir, log=logged.append) == str(work_dir / "iter_10.pth")
    assert any("not a training checkpoint" in line for line in logged)
    assert not any(".iter_20" in line for line in logged)


def test_no_usable_checkpoint_is_an_error_listing_each_file(tmp_path):
    work_dir = _work_dir(tmp_path)
    for name in ("iter_5.pth", "iter_10.pth", "iter_15.pth"):
        _truncate(work_dir / name)
    with pytest.raises(CheckpointError, match=r"no usable checkpoint in .*iter_15\.pth.*"
                                              r"iter_10\.pth.*iter_5\.pth"):
        resumable_checkpoint(work_dir, log=lambda message: None)


def test_a_fresh_work_dir_starts_from_scratch(tmp_path):
    assert resumable_checkpoint(tmp_path, log=lambda message: None) is None


def test_apply_resume_picks_the_fallback_and_refuses_a_bad_named_file(tmp_path):
    work_dir = _work_dir(tmp_path)
    _truncate(work_dir / "iter_15.pth")
    cfg = Config(dict(work_dir=str(work_dir)))
    apply_resume(cfg, "auto")
    assert cfg.resume is True and cfg.load_from == str(work_dir / "iter_10.pth")
    with pytest.raises(CheckpointError, match=r"--resume .*iter_15\.pth: cannot resume from it: "
                                              r".*cannot be read by torch\.load"):
        apply_resume(Config(dict(work_dir=str(work_dir))), str(work_dir / "iter_15.pth"))


# --- through tools/train.py ---------------------------------------------------------------

def _toy_config(tmp_path: Path, hooks: str = "", name: str = "toy_iter") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(
        f'_base_ = ["{TOY_CONFIG}"]\n'
        'custom_imports = dict(imports=["tests.fixtures.toy", "tests.core.engine.fault_hooks"],'
        " allow_failed_imports=False)\n"
        'train_cfg = dict(_delete_=True, type="ResumableEpochBasedTrainLoop", max_epochs=2, '
        "val_interval=2)\n"
        "default_hooks = dict(checkpoint=dict(interval=5, by_epoch=False))\n"
        f"custom_hooks = [dict(type='DumpSeenIndicesHook'){hooks}]\n")
    return str(path)


@pytest.mark.faults
def test_train_resume_past_a_truncated_latest_and_refuse_a_named_bad_file(tmp_path, fault_report):
    full, work = tmp_path / "full", tmp_path / "work"
    config = _toy_config(tmp_path)
    proc = run_tool("tools/train.py", config, "--work-dir", full)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a run killed after iteration 12: iter_5 and iter_10 exist; then iter_10 is damaged
    proc = run_tool("tools/train.py", _toy_config(tmp_path, ", dict(type='KillAfterIterHook', "
                    "iteration=12)", name="killed"), "--work-dir", work)
    assert proc.returncode == 17 and (work / "iter_10.pth").is_file(), proc.stderr[-3000:]
    _truncate(work / "iter_10.pth")

    proc = run_tool("tools/train.py", config, "--work-dir", work, "--resume", work / "iter_10.pth")
    assert proc.returncode == 2
    assert f"--resume {work / 'iter_10.pth'}: cannot resume from it" in proc.stderr
    assert "cannot be read by torch.load" in proc.stderr
    fault_report.record("train: --resume PATH on a truncated checkpoint (refused)")

    proc = run_tool("tools/train.py", config, "--work-dir", work, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert f"cannot resume from {work / 'iter_10.pth'}" in output
    assert f"resuming from {work / 'iter_5.pth'}, the newest valid checkpoint" in output
    expected = torch.load(full / "weights_rank0.pt", weights_only=True)
    got = torch.load(work / "weights_rank0.pt", weights_only=True)
    same = all(torch.equal(got[k], v) for k, v in expected.items())
    fault_report.record("train: --resume past a truncated latest checkpoint", survived=same,
                        lost=0 if same else 1)
    assert same


@pytest.mark.faults
def test_a_kill_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, fault_report):
    """The process dies inside torch.save of iter_10 (an object whose pickling calls
    os._exit); iter_5 and last_checkpoint stay whole and --resume finishes the run."""
    work = tmp_path / "work"
    proc = run_tool("tools/train.py", _toy_config(tmp_path, ", dict(type='DieWhileSavingHook', "
                    "iteration=10)", name="dies_saving"), "--work-dir", work)
    assert proc.returncode == 19, proc.stderr[-3000:]
    assert not (work / "iter_10.pth").exists()
    assert (work / "last_checkpoint").read_text().strip() == str(work / "iter_5.pth")
    assert checkpoint_problem(str(work / "iter_5.pth")) is None
    proc = run_tool("tools/train.py", _toy_config(tmp_path), "--work-dir", work, "--resume")
    lost = int(proc.returncode != 0)
    fault_report.record("train: killed while saving a checkpoint", survived=not lost, lost=lost)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "iter_15.pth").is_file()
