"""Preemption: SIGTERM / SIGUSR1 save the current iteration and exit with 143 / 138;
``--resume`` continues, and a run preempted twice ends bit-identical to an
uninterrupted one (CPU, ``num_workers=0``).

The toy run (2 epochs x 8 iterations) has randomness on both sides: a NumPy augmentation
in the dataset and dropout from torch's generator. Its iteration checkpoints every 5
iterations are not where the signals come: at 3 (inside epoch 1) and at 8 (the last batch
of epoch 1, before the epoch ends), so each resume starts from the preemption checkpoint.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from interlace.core.engine.cli import add_default_hooks, apply_resume, build_runner, load_config
from interlace.core.engine.hooks.preemption import PREEMPTED_EXIT_CODES, Preempted, PreemptionHook
from tests.fixtures.tools import ROOT, TOY_CONFIG, tool_env

PER_EPOCH = 8  # 32 samples, batch 4


def _config(tmp_path: Path, name: str, hooks: list[str]) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(
        f'_base_ = ["{TOY_CONFIG}"]\n'
        'custom_imports = dict(imports=["tests.fixtures.toy", "tests.core.engine.fault_hooks"],'
        " allow_failed_imports=False)\n"
        'train_cfg = dict(_delete_=True, type="ResumableEpochBasedTrainLoop", max_epochs=2, '
        "val_interval=2)\n"
        "train_dataloader = dict(dataset=dict(jitter=0.3))\n"
        "model = dict(dropout=0.3)\n"
        "default_hooks = dict(checkpoint=dict(interval=5, by_epoch=False))\n"
        f"custom_hooks = [dict(type='DumpSeenIndicesHook'), {', '.join(hooks)}]\n")
    return str(path)


def _train(config: str, work_dir: Path, resume=None):
    """tools/train.py's sequence, in this process."""
    cfg = load_config(config, work_dir=str(work_dir))
    cfg.experiment_name = f"run_{uuid.uuid4().hex[:8]}"  # runners in one second must differ
    apply_resume(cfg, resume)
    runner = build_runner(cfg)
    runner.train()
    return runner


def _final(work_dir: Path) -> tuple[dict, list[int]]:
    weights = torch.load(work_dir / "weights_rank0.pt", weights_only=True)
    return weights, json.loads((work_dir / "seen_rank0.json").read_text())


def _max_abs_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_default_hooks_are_added_once_and_respect_the_config(tmp_path):
    cfg = load_config(str(TOY_CONFIG), work_dir=str(tmp_path))
    add_default_hooks(cfg)
    add_default_hooks(cfg)
    types = [h["type"] for h in cfg.custom_hooks]
    assert types.count("PreemptionHook") == 1 and types.count("NonFiniteLossHook") == 1
    assert cfg.optim_wrapper.type == "NonFiniteGuardOptimWrapper"
    cfg = load_config(str(TOY_CONFIG), work_dir=str(tmp_path), cfg_options={
        "custom_hooks": [dict(type="PreemptionHook", signals=[])],
        "optim_wrapper.type": "AmpOptimWrapper"})
    add_default_hooks(cfg)
    assert [h for h in cfg.custom_hooks if h["type"] == "PreemptionHook"] == [
        dict(type="PreemptionHook", signals=[])]
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"  # a chosen wrapper is left alone
    assert PreemptionHook(signals=[]).signals == []
    assert PreemptionHook().exit_codes == {signal.SIGTERM: 143, signal.SIGUSR1: 138}
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        PreemptionHook(signals=["SIGNOPE"])


def test_preempted_twice_in_process_ends_bitwise_at_the_uninterrupted_weights(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    _train(_config(tmp_path, "full", []), full_dir)
    preempting = _config(tmp_path, "cut", [
        "dict(type='SignalAtIterHook', iterations=[3], signum='SIGTERM')",
        "dict(type='SignalAtIterHook', iterations=[8], signum='SIGUSR1')"])

    with pytest.raises(Preempted) as first:
        _train(preempting, cut_dir)
    assert first.value.code == 143 == PREEMPTED_EXIT_CODES[signal.SIGTERM]
    assert first.value.checkpoint == str(cut_dir / "iter_3.pth")
    assert (cut_dir / "last_checkpoint").read_text() == str(cut_dir / "iter_3.pth")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers given back

    with pytest.raises(Preempted) as second:  # resumes at 3, stopped at the end of epoch 1
        _train(preempting, cut_dir, resume="auto")
    assert second.value.code == 138 and (cut_dir / "iter_8.pth").is_file()
    assert (cut_dir / "iter_5.pth").is_file()  # the regular checkpoints went on

    runner = _train(preempting, cut_dir, resume="auto")
    assert runner.iter == 2 * PER_EPOCH and runner.epoch == 2
    (full, full_seen), (resumed, resumed_seen) = _final(full_dir), _final(cut_dir)
    assert resumed_seen == full_seen[PER_EPOCH * 4:]  # the last run trained epoch 2 only
    difference = _max_abs_difference(full, resumed)
    print(f"preempted twice vs uninterrupted: max abs difference {difference} over "
          f"{len(full)} tensors")
    for name, value in full.items():
        assert torch.equal(resumed[name], value), name


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before {path.name}:\n"
                                 + proc.stderr.read()[-3000:])
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path.name} after {timeout} s")
        time.sleep(0.05)


def _train_tool(config: str, work_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "tools/train.py", config, "--work-dir",
                             str(work_dir), *extra], cwd=ROOT, env=tool_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.faults
def test_tools_train_killed_by_real_signals_resumes_to_the_same_weights(tmp_path, fault_report):
    """Signals sent from outside to `tools/train.py` while it waits at iteration 3 (SIGTERM)
    and 11 (SIGUSR1); `--resume` continues; the end weights equal the uninterrupted run."""
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    proc = _train_tool(_config(tmp_path, "full", []), full_dir)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]

    for iteration, signum, resume in ((3, signal.SIGTERM, ()), (11, signal.SIGUSR1, ("--resume",))):
        marker = tmp_path / f"at_{iteration}"
        config = _config(tmp_path, f"pause_{iteration}", [
            f"dict(type='PauseAtIterHook', iteration={iteration}, marker='{marker}')"])
        proc = _train_tool(config, cut_dir, *resume)
        _wait_for(marker, proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, stderr[-3000:]
        assert (cut_dir / f"iter_{iteration}.pth").is_file()
        fault_report.record(f"train: {signal.Signals(signum).name} at iteration {iteration}",
                            survived=True)

    proc = _train_tool(_config(tmp_path, "rest", []), cut_dir, "--resume")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    (full, full_seen), (resumed, resumed_seen) = _final(full_dir), _final(cut_dir)
    assert resumed_seen == full_seen[11 * 4:]
    difference = _max_abs_difference(full, resumed)
    print(f"tools/train.py preempted twice vs uninterrupted: max abs difference {difference} "
          f"over {len(full)} tensors")
    same = all(torch.equal(resumed[k], v) for k, v in full.items())
    fault_report.record("train: preempted twice, final weights", survived=same,
                        lost=0 if same else 1)
    assert same
