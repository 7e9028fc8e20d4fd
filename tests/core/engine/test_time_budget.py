"""TimeBudgetHook: iteration budgets end a run exactly, the lr follows the budget, the
final weights are saved where --resume and Pretrained find them."""
from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from interlace.core.engine.hooks.time_budget import TimeBudgetHook, budget_lr_factor
from interlace.core.engine.pretrained_init import resolve_checkpoint

TOY_CONFIG = Path(__file__).resolve().parents[2] / "fixtures" / "toy_config.py"


class _RecordLr(Hook):
    priority = "LOWEST"

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.lrs.append(runner.optim_wrapper.optimizer.param_groups[0]["lr"])


def _budget_runner(work_dir: Path, **hook) -> tuple[Runner, _RecordLr]:
    cfg = Config.fromfile(str(TOY_CONFIG))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f"toy_{uuid.uuid4().hex[:8]}"
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=10 ** 9, val_interval=10 ** 9)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=10 ** 9, by_epoch=False)
    cfg.custom_hooks = [dict(type="TimeBudgetHook", **hook)]
    runner = Runner.from_cfg(cfg)
    recorder = _RecordLr()
    runner.register_hook(recorder)
    return runner, recorder


def test_lr_factor_warms_up_then_decays_by_cosine():
    assert budget_lr_factor(0.0, 0.1, 0.01, 0.0) == pytest.approx(0.01)
    assert budget_lr_factor(0.05, 0.1, 0.01, 0.0) == pytest.approx(0.01 + 0.99 * 0.5)
    assert budget_lr_factor(0.1, 0.1, 0.01, 0.0) == pytest.approx(1.0)
    # halfway through the cosine part: (1 + cos(pi / 2)) / 2 = 0.5, lifted by end_factor
    assert budget_lr_factor(0.55, 0.1, 0.01, 0.2) == pytest.approx(0.2 + 0.8 * 0.5)
    assert budget_lr_factor(1.0, 0.1, 0.01, 0.2) == pytest.approx(0.2)
    assert budget_lr_factor(2.0, 0.0, 0.01, 0.0) == pytest.approx(0.0)


def test_iteration_budget_stops_exactly_and_schedules_the_lr(tmp_path):
    runner, recorder = _budget_runner(tmp_path, max_iters=7, warmup=0.0, end_factor=0.0)
    runner.train()
    assert runner.iter == 7
    base = 0.05  # the toy config's SGD lr
    expected = [base * 0.5 * (1 + math.cos(math.pi * i / 7)) for i in range(7)]
    assert recorder.lrs == pytest.approx(expected)
    assert runner.message_hub.get_info("budget_progress") == pytest.approx(1.0)


def test_spent_budget_saves_the_final_checkpoint_and_last_checkpoint(tmp_path):
    runner, _ = _budget_runner(tmp_path, max_iters=3)
    runner.train()
    assert (tmp_path / "iter_3.pth").is_file()
    assert Path(resolve_checkpoint(str(tmp_path))) == tmp_path / "iter_3.pth"


def test_minutes_budget_ends_the_run(tmp_path):
    # a tiny budget: the first iteration already spends it, whatever the machine
    runner, _ = _budget_runner(tmp_path, max_minutes=1e-9)
    runner.train()
    assert runner.iter == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "max_minutes or max_iters"),
    (dict(max_iters=0), "max_iters must be > 0"),
    (dict(max_iters=3, clock="gpu"), "clock must be"),
    (dict(max_iters=3, lr_schedule="step"), "lr_schedule must be"),
    (dict(max_iters=3, warmup=1.0), "warmup must lie"),
])
def test_bad_budget_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimeBudgetHook(**kwargs)


def test_resuming_a_spent_budget_trains_nothing_more(tmp_path):
    import torch
    runner, _ = _budget_runner(tmp_path, max_iters=3)
    runner.train()
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    resumed, recorder = _budget_runner(tmp_path, max_iters=3)
    resumed._resume, resumed._load_from = True, str(tmp_path / "iter_3.pth")
    resumed.train()
    assert resumed.iter == 3 and recorder.lrs == []
    after = resumed.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
