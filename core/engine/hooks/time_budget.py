"""``TimeBudgetHook``: train for a budget of minutes or iterations, with the learning rate
driven by the share of the budget spent.

A budget in iterations gives deterministic regression runs; a budget in minutes fits a
run to a machine (``clock='cpu'`` counts this process's CPU time, which a machine shared
with other jobs disturbs far less than wall time). The hook publishes the share spent as
``budget_progress`` in the message hub, so hooks that follow a schedule (the EMA teacher's
momentum) can follow the same one.

Use it with ``train_cfg = dict(type='IterBasedTrainLoop', max_iters=<large>)`` and
``param_scheduler = []`` when ``lr_schedule`` is set: the hook owns the schedule. When the
budget is spent it saves ``iter_<N>.pth`` in the work dir and points ``last_checkpoint`` at
it, as mmengine's CheckpointHook does, so ``--resume`` and ``load_from`` find it.
"""
from __future__ import annotations

import math
import os.path as osp
import time
from typing import Optional

from mmengine.hooks import Hook

from ..atomic_files import write_text_atomic
from ..registry import HOOKS

__all__ = ["TimeBudgetHook", "budget_lr_factor"]


def budget_lr_factor(progress: float, warmup: float, start: float, end: float) -> float:
    """Learning-rate multiplier at `progress` in [0, 1] of the budget: linear from `start`
    to 1 over the first `warmup` share, then a cosine from 1 down to `end`."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return start + (1.0 - start) * progress / warmup
    rest = (progress - warmup) / max(1.0 - warmup, 1e-12)
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * rest))


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Stop training when the budget is spent; optionally schedule the lr over it.

    Args:
        max_minutes: budget in minutes of `clock` (None: no time budget).
        max_iters: budget in iterations (None: none). With both, the first one spent ends
            the run and the schedule follows whichever is further along.
        clock: ``'wall'`` (elapsed time) or ``'cpu'`` (this process's CPU time, all
            threads).
        lr_schedule: ``'cosine'`` sets every param group's lr to its base lr times
            :func:`budget_lr_factor` before each iteration; None leaves the lr alone.
        warmup: share of the budget for the linear warm-up.
        warmup_start: lr factor at the start of the warm-up.
        end_factor: lr factor at the end of the budget.
        save_checkpoint: save the final weights when the budget is spent.
    """

    priority = "LOW"  # after the EMA teacher's update, before checkpoint/logging hooks

    def __init__(self, max_minutes: Optional[float] = None, max_iters: Optional[int] = None,
                 clock: str = "wall", lr_schedule: Optional[str] = "cosine",
                 warmup: float = 0.05, warmup_start: float = 0.01, end_factor: float = 0.0,
                 save_checkpoint: bool = True) -> None:
        if max_minutes is None and max_iters is None:
            raise ValueError("TimeBudgetHook needs max_minutes or max_iters")
        if max_minutes is not None and max_minutes <= 0:
            raise ValueError(f"TimeBudgetHook: max_minutes must be > 0, got {max_minutes}")
        if max_iters is not None and max_iters <= 0:
            raise ValueError(f"TimeBudgetHook: max_iters must be > 0, got {max_iters}")
        if clock not in ("wall", "cpu"):
            raise ValueError(f"TimeBudgetHook: clock must be 'wall' or 'cpu', got {clock!r}")
        if lr_schedule not in (None, "cosine"):
            raise ValueError(f"TimeBudgetHook: lr_schedule must be 'cosine' or None, "
                             f"got {lr_schedule!r}")
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"TimeBudgetHook: warmup must lie in [0, 1), got {warmup}")
        self.max_seconds = None if max_minutes is None else 60.0 * max_minutes
        self.max_iters = max_iters
        self.clock = clock
        self.lr_schedule = lr_schedule
        self.warmup, self.warmup_start, self.end_factor = warmup, warmup_start, end_factor
        self.save_checkpoint = save_checkpoint
        self._timer = time.perf_counter if clock == "wall" else time.process_time
        self._start: Optional[float] = None
        self._spent_before = 0.0  # seconds spent before a resume
        self._start_iter = 0
        self.base_lrs: list[float] = []
        self.stopped_at: Optional[int] = None

    # -- progress ----------------------------------------------------------------------

    def seconds_spent(self) -> float:
        if self._start is None:
            return self._spent_before
        return self._spent_before + self._timer() - self._start

    def progress(self, iters_done: int) -> float:
        """Share of the budget spent after `iters_done` iterations, in [0, 1]."""
        shares = []
        if self.max_seconds is not None:
            shares.append(self.seconds_spent() / self.max_seconds)
        if self.max_iters is not None:
            shares.append(iters_done / self.max_iters)
        return min(1.0, max(shares))

    # -- hook points -------------------------------------------------------------------

    def before_train(self, runner) -> None:
        self._start = self._timer()
        self._start_iter = runner.iter
        groups = runner.optim_wrapper.optimizer.param_groups
        # `initial_lr` survives a resume (mmengine's schedulers set it too); `lr` does not.
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in groups]
        runner.message_hub.update_info("budget_progress", self.progress(runner.iter))
        loop = runner.train_loop
        if self.max_seconds is None and hasattr(loop, "_max_iters"):
            # the loop's own end is a placeholder: make it the budget, so the logged ETA
            # and `runner.max_iters` mean something
            loop._max_iters = min(loop._max_iters, self.max_iters)
        if runner.iter > 0 and self.progress(runner.iter) >= 1.0:
            # resumed from a run that had spent its budget: one more step would change it
            runner.train_loop.stop_training = True
            self.stopped_at = runner.iter
            runner.logger.info(f"TimeBudgetHook: the budget was spent at iteration "
                               f"{runner.iter}; nothing left to train")

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        progress = self.progress(runner.iter)
        runner.message_hub.update_info("budget_progress", progress)
        if self.lr_schedule is None:
            return
        factor = budget_lr_factor(progress, self.warmup, self.warmup_start, self.end_factor)
        for group, base in zip(runner.optim_wrapper.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        runner.message_hub.update_info("budget_progress", self.progress(done))
        if self.progress(done) < 1.0:
            return
        runner.train_loop.stop_training = True
        self.stopped_at = done
        runner.logger.info(f"TimeBudgetHook: budget spent after {done} iterations "
                           f"({self.seconds_spent() / 60:.2f} min of {self.clock} time)")
        if self.save_checkpoint:
            name = f"iter_{done}.pth"
            # by_epoch=False: the meta records `done` iterations, so --resume starts after
            # the last one instead of repeating it
            runner.save_checkpoint(runner.work_dir, name, by_epoch=False)
            write_text_atomic(osp.join(runner.work_dir, "last_checkpoint"),
                              osp.join(runner.work_dir, name))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["budget_seconds_spent"] = self.seconds_spent()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._spent_before = float(checkpoint.get("meta", {}).get("budget_seconds_spent", 0.0))
