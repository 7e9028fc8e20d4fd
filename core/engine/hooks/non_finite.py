"""Non-finite losses and gradients: skip the step, count it, log the loss terms, and stop
after too many in a row.

Two pieces, because mmengine hooks run only after ``train_step`` has already stepped
the optimizer:

- :class:`NonFiniteGuardOptimWrapper` (an ``OptimWrapper``) decides. ``backward`` notes
  whether the loss was finite; ``step`` checks every gradient (the max-abs of each, one
  device sync) and, when the loss or any gradient is NaN / inf, skips
  ``optimizer.step`` (and gradient clipping); the caller's ``zero_grad`` then drops the
  bad gradients. Weights, optimizer state (momentum, Adam moments, step count) are left
  as they were; learning-rate schedulers still advance, as with AMP's skipped steps.
  Under ``torch.distributed`` the ranks agree with one all-reduce, so all skip together
  and the replicas stay equal. With gradient accumulation the whole accumulated update
  is dropped.
- :class:`NonFiniteLossHook` reports. After each iteration it counts a bad iteration
  (a skipped update, or any non-finite loss term in ``train_step``'s outputs), logs a
  warning with the loss terms (and the parameters with non-finite gradients), and after
  ``max_consecutive`` bad iterations in a row raises :class:`NonFiniteLossError`
  naming the iteration and the non-finite terms. With another optimizer wrapper (e.g.
  ``AmpOptimWrapper``, whose GradScaler skips inf steps itself) the hook still counts
  and stops.

``tools/train.py`` turns both on when the config does not choose (``add_default_hooks``
in ``core/engine/cli.py``): ``optim_wrapper.type='OptimWrapper'`` (or none) becomes
``NonFiniteGuardOptimWrapper`` and ``NonFiniteLossHook(max_consecutive=10)`` is added.
Set ``custom_hooks = [dict(type='NonFiniteLossHook', max_consecutive=N)]`` to change N.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict

from ..registry import HOOKS, OPTIM_WRAPPERS

__all__ = ["NonFiniteGuardOptimWrapper", "NonFiniteLossHook", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many consecutive non-finite steps."""


def _all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A 0-dim bool tensor: every element of every tensor is finite (no sync here)."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_device.setdefault(tensor.device, []).append(tensor.detach())
    flags = []
    for group in by_device.values():
        # max-abs is NaN / inf exactly when an element is (a 2-norm could overflow)
        if hasattr(torch, "_foreach_norm"):  # one kernel per device for all tensors
            peaks = torch._foreach_norm(group, float("inf"))
        else:
            peaks = [t.abs().amax() if t.numel() else t.new_zeros(()) for t in group]
        flags.append(torch.isfinite(torch.stack(peaks)).all().cpu())
    return torch.stack(flags).all() if flags else torch.tensor(True)


def _agree_any(bad: bool) -> bool:
    """True on every rank if `bad` is True on any rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bad
    from mmengine.dist import all_reduce
    flag = torch.tensor([int(bad)], dtype=torch.int64)
    all_reduce(flag, op="max")
    return bool(flag.item())


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that skips the update when the loss or a gradient is not finite.

    Same arguments as mmengine's ``OptimWrapper``. After each ``step`` call,
    ``last_step_skipped`` says whether it was skipped, ``last_problem`` why, and
    ``bad_params`` holds the parameters whose gradients were not finite;
    ``skipped_steps`` counts all skipped updates.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped_steps = 0
        self.last_step_skipped = False
        self.last_problem: Optional[str] = None
        self.bad_params: list[torch.nn.Parameter] = []
        self._loss_finite: Optional[torch.Tensor] = None  # since the last step, no sync

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        finite = torch.isfinite(loss.detach()).all()
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
        super().backward(loss, **kwargs)

    def _params_with_grad(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]
                if p.grad is not None]

    def step(self, **kwargs: Any) -> None:
        params = self._params_with_grad()
        loss_finite = True if self._loss_finite is None else bool(self._loss_finite)
        grads_finite = bool(_all_finite([p.grad for p in params]))
        self._loss_finite = None
        bad = _agree_any(not (loss_finite and grads_finite))
        self.last_step_skipped = bad
        self.bad_params = []
        self.last_problem = None
        if not bad:
            super().step(**kwargs)
            return
        self.skipped_steps += 1
        if not grads_finite:
            self.bad_params = [p for p in params if not bool(torch.isfinite(p.grad).all())]
        reasons = []
        if not loss_finite:
            reasons.append("non-finite loss")
        if self.bad_params:
            reasons.append(f"non-finite gradients in {len(self.bad_params)} parameter tensor(s)")
        self.last_problem = ", ".join(reasons) or "non-finite values on another rank"


def _guards(optim_wrapper: Any) -> list[NonFiniteGuardOptimWrapper]:
    wrappers = (list(optim_wrapper.values()) if isinstance(optim_wrapper, OptimWrapperDict)
                else [optim_wrapper])
    return [w for w in wrappers if isinstance(w, NonFiniteGuardOptimWrapper)]


def _scalar(value: Any) -> Optional[float]:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, (int, float)):
        return float(value)
    return None


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Count, log and limit iterations with a non-finite loss or a skipped update.

    Args:
        max_consecutive: stop with :class:`NonFiniteLossError` after this many bad
            iterations in a row (a finite one resets the run).
    """

    priority = "ABOVE_NORMAL"  # before the logger prints the iteration

    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 1:
            raise ValueError(f"NonFiniteLossHook: max_consecutive must be >= 1, got "
                             f"{max_consecutive}")
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        for guard in _guards(runner.optim_wrapper):
            guard.last_step_skipped = False  # a step in this iteration sets it again
            guard.bad_params = []
            guard.last_problem = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        terms = {k: _scalar(v) for k, v in (outputs or {}).items()}
        terms = {k: v for k, v in terms.items() if v is not None}
        bad_terms = {k: v for k, v in terms.items() if not math.isfinite(v)}
        skipped = [g for g in _guards(runner.optim_wrapper) if g.last_step_skipped]
        if not bad_terms and not skipped:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total += 1
        iteration = runner.iter + 1
        what = ", ".join(f"{k}={v}" for k, v in bad_terms.items()) or "none"
        grads = self._bad_param_names(runner, skipped)
        action = ("update skipped" if skipped else
                  "update NOT skipped: the optimizer wrapper has no guard")
        detail = f"; non-finite gradients in {grads}" if grads else ""
        runner.logger.warning(
            f"NonFiniteLossHook: iteration {iteration}: non-finite loss terms: {what}{detail} "
            f"({action}); loss terms: {', '.join(f'{k}={v:.6g}' for k, v in terms.items())}; "
            f"{self.total} bad iteration(s) so far, {self.consecutive} in a row "
            f"(stop at {self.max_consecutive})")
        runner.message_hub.update_info("non_finite_iterations", self.total)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"Training stopped at iteration {iteration}: {self.consecutive} consecutive "
                f"iterations with non-finite values (max_consecutive={self.max_consecutive}); "
                f"non-finite loss terms at iteration {iteration}: {what}{detail}. Lower the "
                "learning rate, check the data of these iterations, or resume from the last "
                "checkpoint.")

    @staticmethod
    def _bad_param_names(runner, guards: list[NonFiniteGuardOptimWrapper]) -> str:
        bad = {id(p) for g in guards for p in g.bad_params}
        if not bad:
            return ""
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        names = [name for name, p in model.named_parameters() if id(p) in bad]
        shown = ", ".join(names[:5]) + (f", ... (+{len(names) - 5})" if len(names) > 5 else "")
        return shown
