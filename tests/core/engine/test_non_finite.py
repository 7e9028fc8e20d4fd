"""Non-finite losses and gradients: the step is skipped (weights and optimizer state
untouched), counted and logged with the loss terms; N bad iterations in a row stop the
run with an error naming the iteration and the terms."""
from __future__ import annotations

import logging
import uuid

import pytest
import torch

from interlace.core.engine.cli import apply_resume, build_runner, load_config
from interlace.core.engine.hooks.non_finite import (NonFiniteGuardOptimWrapper, NonFiniteLossError,
                                                    NonFiniteLossHook)
from tests.fixtures.tools import TOY_CONFIG


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _run(tmp_path, nan_at, max_consecutive=3, value="float('nan')", optimizer="SGD"):
    config = tmp_path / "nan.py"
    config.write_text(
        f'_base_ = ["{TOY_CONFIG}"]\n'
        'custom_imports = dict(imports=["tests.fixtures.toy", "tests.core.engine.fault_hooks"],'
        " allow_failed_imports=False)\n"
        f"optim_wrapper = dict(optimizer=dict(_delete_=True, type='{optimizer}', lr=0.05"
        f"{', momentum=0.9' if optimizer == 'SGD' else ''}))\n"
        "custom_hooks = [dict(type='RecordWeightsHook'), "
        f"dict(type='NaNInputsAtIterHook', iterations={list(nan_at)}, value={value}), "
        f"dict(type='NonFiniteLossHook', max_consecutive={max_consecutive})]\n")
    cfg = load_config(str(config), work_dir=str(tmp_path / "work"))
    cfg.experiment_name = f"nan_{uuid.uuid4().hex[:8]}"
    apply_resume(cfg, None)
    runner = build_runner(cfg)  # adds the guard wrapper (the config names OptimWrapper)
    records = _Records()
    runner.logger.addHandler(records)
    recorder = next(h for h in runner.hooks if type(h).__name__ == "RecordWeightsHook")
    hook = next(h for h in runner.hooks if isinstance(h, NonFiniteLossHook))
    error = None
    try:
        runner.train()
    except NonFiniteLossError as raised:
        error = raised
    finally:
        runner.logger.removeHandler(records)
    return runner, recorder.history, hook, records.messages, error


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')"])
def test_bad_steps_are_skipped_counted_logged_and_training_goes_on(tmp_path, value):
    runner, history, hook, messages, error = _run(tmp_path, nan_at=[3, 4, 9], value=value,
                                                  optimizer="SGD")
    assert error is None and runner.iter == 16
    assert isinstance(runner.optim_wrapper, NonFiniteGuardOptimWrapper)
    for iteration in (3, 4, 9):  # history[i] = weights after iteration i
        assert _equal(history[iteration], history[iteration - 1]), iteration
    for iteration in (2, 5, 10):  # good steps move the weights
        assert not _equal(history[iteration], history[iteration - 1]), iteration
    assert hook.total == 3 and runner.optim_wrapper.skipped_steps == 3
    warnings = [m for m in messages if "NonFiniteLossHook" in m]
    assert len(warnings) == 3
    assert "iteration 3: non-finite loss terms: loss=" in warnings[0]
    assert "loss_mse=" in warnings[0] and "update skipped" in warnings[0]
    assert "1 bad iteration(s) so far, 1 in a row" in warnings[0]
    assert "2 bad iteration(s) so far, 2 in a row" in warnings[1]
    assert "3 bad iteration(s) so far, 1 in a row" in warnings[2]  # iteration 5 reset the run
    assert runner.message_hub.get_info("non_finite_iterations") == 3


def test_momentum_is_not_touched_by_a_skipped_step(tmp_path):
    runner, history, _, _, _ = _run(tmp_path, nan_at=[2], optimizer="SGD")
    state = runner.optim_wrapper.optimizer.state
    assert all(torch.isfinite(s["momentum_buffer"]).all() for s in state.values())
    assert all(torch.isfinite(t).all() for t in history[-1].values())


def test_n_consecutive_bad_steps_stop_with_the_iteration_and_terms(tmp_path):
    runner, history, hook, _, error = _run(tmp_path, nan_at=[3, 6, 7, 8, 9], max_consecutive=3)
    assert error is not None
    message = str(error)
    assert "stopped at iteration 8: 3 consecutive iterations with non-finite values" in message
    assert "max_consecutive=3" in message and "loss_mse=nan" in message
    assert runner.iter == 7  # the loop stopped inside iteration 8 (0-based 7)
    assert len(history) == 1 + 7  # before training, then after iterations 1-7 only
    assert _equal(history[7], history[5])  # 6 and 7 changed nothing


def test_guard_skips_a_non_finite_gradient_with_a_finite_loss():
    model = torch.nn.Linear(3, 1)
    wrapper = NonFiniteGuardOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model(torch.ones(2, 3)).sum()
    wrapper.backward(loss)
    model.bias.grad[0] = float("inf")
    wrapper.step()
    assert wrapper.last_step_skipped and wrapper.bad_params == [model.bias]
    assert wrapper.last_problem == "non-finite gradients in 1 parameter tensor(s)"
    assert _equal(model.state_dict(), before)
    wrapper.zero_grad()
    wrapper.update_params(model(torch.ones(2, 3)).sum())  # a good step goes through
    assert not wrapper.last_step_skipped and not _equal(model.state_dict(), before)


def test_max_consecutive_must_be_positive():
    with pytest.raises(ValueError, match="max_consecutive must be >= 1"):
        NonFiniteLossHook(max_consecutive=0)
