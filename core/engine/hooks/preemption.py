"""``PreemptionHook``: on SIGTERM or SIGUSR1, save a checkpoint at the current iteration
and exit, so that ``tools/train.py --resume`` continues where the job was stopped.

Slurm (``--signal``, ``scancel``) and Kubernetes (pod eviction, spot reclaim) send SIGTERM
or SIGUSR1 some time before they kill a job. The signal handler only records the signal;
the hook acts at the end of the training iteration that is running (``after_train_iter``,
after the checkpoint and scheduler hooks), where the model, optimizer, schedulers,
message hub and generator states are consistent:

1. it saves ``iter_<N>.pth`` (``N`` = iterations done) into the checkpoint folder of the
   run's ``CheckpointHook`` (the work dir by default) through ``runner.save_checkpoint``,
   so every ``before_save_checkpoint`` hook adds its state, :class:`RandomStateHook`'s
   generator states included, and points ``work_dir/last_checkpoint`` at it;
2. it exits with :data:`PREEMPTED_EXIT_CODES` ``[signal]``: **143 for SIGTERM, 138 for
   SIGUSR1** (128 + the signal number, what a shell reports for a process the signal
   killed, so schedulers treat the job as preempted, not as a crash).

A second signal before that (the process is stuck where the hook never runs) gets the
signal's default action: the process ends at once, without a checkpoint.

With ``ResumableEpochBasedTrainLoop`` the checkpoint resumes inside the epoch, to the
weights of an uninterrupted run; mmengine's ``IterBasedTrainLoop`` resumes at the
iteration; mmengine's ``EpochBasedTrainLoop`` starts the interrupted epoch over.

Under ``torch.distributed`` the ranks may see the signal at different iterations, so
after every iteration they agree with one all-reduce (max) of a 0/1 flag and all stop at
the same one; only rank 0 writes the file (mmengine's ``save_checkpoint``). A signal
that arrives during validation takes effect after the next training iteration.

``tools/train.py`` adds this hook when the config has none (:func:`add_default_hooks` in
``core/engine/cli.py``); ``custom_hooks = [dict(type='PreemptionHook', signals=[])]``
turns it off.
"""
from __future__ import annotations

import os
import os.path as osp
import signal
import threading
from typing import Optional, Sequence, Union

import torch
from mmengine.hooks import CheckpointHook, Hook

from ..atomic_files import write_text_atomic
from ..registry import HOOKS

__all__ = ["PreemptionHook", "PREEMPTED_EXIT_CODES", "Preempted"]

PREEMPTED_EXIT_CODES = {signal.SIGTERM: 128 + signal.SIGTERM,   # 143
                        signal.SIGUSR1: 128 + signal.SIGUSR1}   # 138


class Preempted(SystemExit):
    """Raised by :class:`PreemptionHook` after it saved the checkpoint; ``code`` is the
    process exit code (:data:`PREEMPTED_EXIT_CODES`), ``checkpoint`` the file written."""

    def __init__(self, code: int, checkpoint: Optional[str]) -> None:
        super().__init__(code)
        self.checkpoint = checkpoint


def _signal_number(value: Union[str, int]) -> signal.Signals:
    if isinstance(value, str):
        name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
        if not hasattr(signal, name):
            raise ValueError(f"PreemptionHook: unknown signal {value!r}")
        return signal.Signals(getattr(signal, name))
    return signal.Signals(value)


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Checkpoint at the current iteration and exit when a preemption signal arrives.

    Args:
        signals: the signals that mean "you are about to be killed" (names or numbers;
            default SIGTERM and SIGUSR1). An empty list disables the hook.
        exit_codes: exit code per signal; default 128 + the signal number (143 for
            SIGTERM, 138 for SIGUSR1).
    """

    priority = "LOWEST"  # after ParamSchedulerHook and CheckpointHook of the same iteration

    def __init__(self, signals: Sequence[Union[str, int]] = ("SIGTERM", "SIGUSR1"),
                 exit_codes: Optional[dict] = None) -> None:
        self.signals = [_signal_number(s) for s in signals]
        self.exit_codes = {s: 128 + int(s) for s in self.signals}
        for key, code in (exit_codes or {}).items():
            self.exit_codes[_signal_number(key)] = int(code)
        self.received: Optional[int] = None  # the signal number, once one arrived
        self._previous: dict[int, object] = {}

    # -- signal handling ---------------------------------------------------------------

    def _on_signal(self, signum: int, frame) -> None:
        if self.received is None:  # the first one decides the exit code
            self.received = signum
            return
        # A second signal: the process may be stuck where the hook never runs (a hung
        # collective, I/O). Give the signal its default action, which ends the process.
        self._uninstall()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _install(self) -> None:
        if not self.signals:
            return
        if threading.current_thread() is not threading.main_thread():
            # signal.signal works only in the main thread; a runner driven from another
            # thread keeps the default behaviour (killed without a checkpoint).
            return
        for signum in self.signals:
            previous = signal.signal(signum, self._on_signal)
            # A run that ended in an exception never reached after_train and left its
            # handler installed: give back what that run found instead of chaining to it.
            stale = getattr(previous, "__self__", None)
            if isinstance(stale, PreemptionHook) and stale is not self:
                previous = stale._previous.pop(signum, signal.SIG_DFL)
            self._previous[signum] = previous

    def _uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def before_train(self, runner) -> None:
        self.received = None
        self._install()

    def after_train(self, runner) -> None:
        self._uninstall()

    # -- acting ------------------------------------------------------------------------

    def _agreed_signal(self) -> int:
        """The signal any rank received (0 if none); every rank gets the same answer."""
        import torch.distributed as dist

        local = int(self.received or 0)
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return local
        from mmengine.dist import all_reduce
        flag = torch.tensor([local], dtype=torch.int64)
        all_reduce(flag, op="max")  # mmengine moves it to the backend's device and back
        return int(flag.item())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.signals:
            return
        signum = self._agreed_signal()
        if not signum:
            return
        done = runner.iter + 1
        path = self.save(runner, done)
        code = self.exit_codes.get(signal.Signals(signum), 128 + signum)
        name = signal.Signals(signum).name
        runner.logger.warning(
            f"PreemptionHook: {name} received; saved iteration {done} to {path} and exiting "
            f"with code {code}. Continue with `tools/train.py CONFIG --resume`.")
        self._uninstall()
        _teardown_distributed()
        raise Preempted(code, path)

    def save(self, runner, done: int) -> str:
        """Save ``iter_<done>.pth`` where the run's CheckpointHook saves and point
        ``last_checkpoint`` at it; returns the path."""
        out_dir = runner.work_dir
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and getattr(hook, "out_dir", None):
                out_dir = hook.out_dir
                break
        name = f"iter_{done}.pth"
        path = osp.join(out_dir, name)
        # by_epoch=False stores meta iter = iterations done and the current epoch, as
        # CheckpointHook's iteration checkpoints do; the loop resumes from there.
        runner.save_checkpoint(out_dir, name, by_epoch=False, save_optimizer=True,
                               save_param_scheduler=True)
        from mmengine.dist import is_main_process
        if is_main_process():
            write_text_atomic(osp.join(runner.work_dir, "last_checkpoint"), path)
        return path


def _teardown_distributed() -> None:
    """All ranks leave together; a gloo group left alive at exit aborts the process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
