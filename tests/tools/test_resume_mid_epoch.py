"""A run killed mid-epoch resumes with --resume to the weights of an uninterrupted run.

The toy run has randomness on both sides (a NumPy augmentation in the dataset, dropout from
torch's generator) and checkpoints every 5 iterations (8 per epoch, 16 in all); the killed
run dies after iteration 12, in epoch 2, so --resume starts from iter_10.pth, 2 batches
into that epoch.
"""
import json

import pytest
import torch

from tests.fixtures.tools import TOY_CONFIG, run_tool

KILLED_EXIT = 17  # KillAfterIterHook's os._exit code


def _config(tmp_path, loop: str, kill_at: int | None) -> str:
    hooks = ["dict(type='DumpSeenIndicesHook')"]
    if kill_at:
        hooks.append(f"dict(type='KillAfterIterHook', iteration={kill_at})")
    path = tmp_path / f"{loop}_{kill_at}.py"
    path.write_text(
        f'_base_ = ["{TOY_CONFIG}"]\n'
        f'train_cfg = dict(_delete_=True, type="{loop}", max_epochs=2, val_interval=2)\n'
        "train_dataloader = dict(dataset=dict(jitter=0.3))\n"
        "model = dict(dropout=0.3)\n"
        "default_hooks = dict(checkpoint=dict(interval=5, by_epoch=False))\n"
        f"custom_hooks = [{', '.join(hooks)}]\n")
    return str(path)


def _train(config: str, work_dir, *extra: str):
    return run_tool("tools/train.py", config, "--work-dir", work_dir, *extra)


def _final(work_dir) -> tuple[dict, list[int]]:
    weights = torch.load(work_dir / "weights_rank0.pt", weights_only=True)
    return weights, json.loads((work_dir / "seen_rank0.json").read_text())


def _kill_and_resume(tmp_path, loop: str):
    full_dir, cut_dir = tmp_path / f"{loop}_full", tmp_path / f"{loop}_cut"
    proc = _train(_config(tmp_path, loop, None), full_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _train(_config(tmp_path, loop, 12), cut_dir)
    assert proc.returncode == KILLED_EXIT, proc.stderr[-3000:]
    assert (cut_dir / "iter_10.pth").is_file() and not (cut_dir / "iter_15.pth").exists()
    proc = _train(_config(tmp_path, loop, None), cut_dir, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _final(full_dir), _final(cut_dir), proc


def test_resumable_loop_reaches_the_uninterrupted_weights(tmp_path):
    (full, full_seen), (resumed, resumed_seen), proc = _kill_and_resume(
        tmp_path, "ResumableEpochBasedTrainLoop")
    # the resumed process trained only on what the killed one had not: iterations 11-16
    assert resumed_seen == full_seen[10 * 4:]
    for name, value in full.items():
        assert torch.equal(resumed[name], value), name


def test_mmengines_own_loop_does_not(tmp_path):
    """The control: mmengine's EpochBasedTrainLoop retrains the epoch's first batches and
    restarts its generators, so the same kill and resume end elsewhere."""
    (full, full_seen), (resumed, resumed_seen), _ = _kill_and_resume(
        tmp_path, "EpochBasedTrainLoop")
    assert len(resumed_seen) == 8 * 4  # the whole of epoch 2 again
    assert not all(torch.equal(resumed[k], v) for k, v in full.items())


def test_skip_first_batches_keeps_order_and_loads_nothing_it_skips():
    from torch.utils.data import DataLoader

    from interlace.core.engine.loops import skip_first_batches

    class Recording(list):
        loaded: list[int] = []

        def __getitem__(self, index):
            self.loaded.append(index)
            return index

    data = Recording(range(10))
    loader = DataLoader(data, batch_size=3, shuffle=False)
    rest = [batch.tolist() for batch in skip_first_batches(loader, 2)]
    assert rest == [[6, 7, 8], [9]] and data.loaded == [6, 7, 8, 9]
    assert len(skip_first_batches(loader, 2)) == 2


@pytest.mark.parametrize("draws", [1, 5])
def test_random_state_round_trip(draws):
    import random

    import numpy as np

    from interlace.core.engine.loops import capture_random_state, restore_random_state
    state = capture_random_state()
    first = [random.random(), float(np.random.rand()), float(torch.rand(1))]
    for _ in range(draws):
        random.random(), np.random.rand(), torch.rand(1)
    restore_random_state(state)
    assert [random.random(), float(np.random.rand()), float(torch.rand(1))] == first
