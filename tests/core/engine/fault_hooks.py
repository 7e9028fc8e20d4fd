"""Hooks that inject training faults at given iterations, for the engine's fault tests.

A config loads them with ``custom_imports=dict(imports=['tests.core.engine.fault_hooks'])``
and the repository root on ``PYTHONPATH``. Iterations are 1-based and global (they keep
counting across a resume).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Sequence

import torch
from mmengine.hooks import Hook

from interlace.core.engine.registry import HOOKS


@HOOKS.register_module()
class SignalAtIterHook(Hook):
    """Send `signum` to this process at the end of each iteration in `iterations`, before
    PreemptionHook looks (a scheduler's SIGTERM arriving during that iteration)."""

    priority = "VERY_LOW"

    def __init__(self, iterations: Sequence[int], signum: int | str = "SIGTERM") -> None:
        self.iterations = set(iterations)
        self.signum = getattr(signal, signum) if isinstance(signum, str) else signum

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 in self.iterations:
            os.kill(os.getpid(), self.signum)


@HOOKS.register_module()
class PauseAtIterHook(Hook):
    """At the end of iteration `iteration`, write `marker` and wait (up to `timeout`
    seconds) until a preemption signal has arrived, so a test can send a real signal
    from outside at a known iteration."""

    priority = "VERY_LOW"

    def __init__(self, iteration: int, marker: str, timeout: float = 60.0) -> None:
        self.iteration, self.marker, self.timeout = iteration, marker, timeout

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 != self.iteration:
            return
        Path(self.marker).write_text(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if any(getattr(hook, "received", None) for hook in runner.hooks):
                return
            time.sleep(0.02)


@HOOKS.register_module()
class NaNInputsAtIterHook(Hook):
    """Replace the batch's inputs with NaN (or inf) at the given iterations."""

    priority = "VERY_HIGH"

    def __init__(self, iterations: Sequence[int], value: float = float("nan")) -> None:
        self.iterations, self.value = set(iterations), value

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter + 1 in self.iterations:
            # new tensors: the toy dataset's samples share memory with its arrays
            data_batch["inputs"] = [torch.full_like(x, self.value) for x in data_batch["inputs"]]


@HOOKS.register_module()
class RecordWeightsHook(Hook):
    """Keep a copy of the weights after every iteration (``history[i]`` = after i + 1)."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.history: list[dict[str, torch.Tensor]] = []

    def before_train(self, runner) -> None:
        self.history = [self._weights(runner)]  # history[0]: before the first iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.history.append(self._weights(runner))

    @staticmethod
    def _weights(runner) -> dict[str, torch.Tensor]:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        return {k: v.detach().clone() for k, v in model.state_dict().items()}


@HOOKS.register_module()
class KillRankAtIterHook(Hook):
    """Rank `rank` ends with ``os._exit(code)`` at the start of iteration `iteration`: a
    rank that dies without saying goodbye (OOM killer, node failure)."""

    priority = "VERY_HIGH"

    def __init__(self, rank: int, iteration: int, code: int = 9) -> None:
        self.rank, self.iteration, self.code = rank, iteration, code

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        from mmengine.dist import get_rank
        if get_rank() == self.rank and runner.iter + 1 == self.iteration:
            os._exit(self.code)


class _ExitWhenPickled:
    def __init__(self, code: int) -> None:
        self.code = code

    def __reduce__(self):
        os._exit(self.code)


@HOOKS.register_module()
class DieWhileSavingHook(Hook):
    """The process ends with ``os._exit(code)`` inside ``torch.save`` of the checkpoint
    of iteration `iteration` (a kill while the file is being written)."""

    def __init__(self, iteration: int, code: int = 19) -> None:
        self.iteration, self.code = iteration, code

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if checkpoint.get("meta", {}).get("iter") == self.iteration:
            checkpoint["dies_when_pickled"] = _ExitWhenPickled(self.code)


@HOOKS.register_module()
class HangRankAtIterHook(Hook):
    """Rank `rank` stops responding (sleeps `seconds`) at the start of iteration
    `iteration`: a rank stuck in I/O or a deadlock, alive but never joining a collective."""

    priority = "VERY_HIGH"

    def __init__(self, rank: int, iteration: int, seconds: float = 3600.0,
                 marker: str | None = None) -> None:
        self.rank, self.iteration, self.seconds, self.marker = rank, iteration, seconds, marker

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        from mmengine.dist import get_rank
        if get_rank() == self.rank and runner.iter + 1 == self.iteration:
            if self.marker:
                Path(self.marker).write_text(str(os.getpid()))
            time.sleep(self.seconds)
