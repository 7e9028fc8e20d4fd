"""Training hooks of SkySense pre-training."""
from __future__ import annotations

from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from interlace.core.engine.registry import HOOKS

from .ema_teacher import cosine_momentum

__all__ = ["EMATeacherHook"]


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """After every training iteration (i.e. after the optimiser step), move the model's
    teacher towards its student: ``teacher = m * teacher + (1 - m) * student``.

    Args:
        momentum: m (SkySense / DINO start at 0.996 for long runs; small runs use less).
        end_momentum: if set, m follows a cosine from `momentum` to `end_momentum` over
            the run's iterations (DINO), or over the budget of a ``TimeBudgetHook`` run
            (the ``budget_progress`` it publishes); else m is constant.

    The model must have ``update_teacher(momentum)`` (:class:`SkySensePretrainer`); DDP
    wrappers are unwrapped. The last momentum used is kept in ``last_momentum``.
    """

    priority = "ABOVE_NORMAL"  # before checkpointing, so a saved teacher is up to date

    def __init__(self, momentum: float = 0.996, end_momentum: Optional[float] = None) -> None:
        for value in (momentum, end_momentum):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"momenta must lie in [0, 1], got {momentum}, {end_momentum}")
        self.momentum = momentum
        self.end_momentum = end_momentum
        self.last_momentum: Optional[float] = None

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The momentum used after iteration `step` (0-based) of `total_steps`."""
        if self.end_momentum is None:
            return self.momentum
        return cosine_momentum(self.momentum, self.end_momentum, step, total_steps)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, "update_teacher"):
            raise AttributeError(f"EMATeacherHook: {type(model).__name__} has no update_teacher")
        hub = getattr(runner, "message_hub", None)
        progress = hub.get_info("budget_progress") if hub is not None else None
        if progress is not None:  # a TimeBudgetHook run: follow the share of the budget spent
            self.last_momentum = self.momentum_at(int(round(1000 * progress)), 1000)
        else:
            self.last_momentum = self.momentum_at(runner.iter, runner.max_iters)
        model.update_teacher(self.last_momentum)
