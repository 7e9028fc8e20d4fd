"""An epoch-based training loop that resumes *inside* an epoch, to the same weights.

mmengine's ``EpochBasedTrainLoop`` resumed from an iteration checkpoint (``CheckpointHook(
by_epoch=False)``) restores the iteration counter but starts the interrupted epoch over:
the batches it had already trained on are trained on again, and the random generators
restart from the seed instead of where they were, so the run ends at other weights than an
uninterrupted one. :class:`ResumableEpochBasedTrainLoop` fixes both:

* it skips the batches of the current epoch that the checkpoint has already seen, through
  the sampler (their data are not even loaded), keeping the epoch's shuffle order
  (``DefaultSampler`` draws it from seed + epoch);
* :class:`RandomStateHook` (registered by the loop) stores the Python, NumPy and torch
  (CPU and CUDA) generator states in every checkpoint and puts them back right before the
  first resumed batch is drawn, so augmentations and dropout continue as if never stopped.

With ``num_workers=0`` (the tiny configs) the resumed run is bit-for-bit the uninterrupted
one on CPU. With worker processes the same samples come in the same order, but the
workers' augmentation streams restart, so it is equivalent, not identical.

Why not mmengine's ``IterBasedTrainLoop``: it does skip trained batches on resume, but by
loading and discarding them, and it does not restore generator states either; the driving
and medical configs are epoch-based (CBGS epochs, per-epoch schedules and validation).
"""
from __future__ import annotations

import itertools
import random
from typing import Any, Iterator, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader, Sampler

from .registry import HOOKS, LOOPS

__all__ = ["ResumableEpochBasedTrainLoop", "RandomStateHook", "capture_random_state",
           "restore_random_state", "skip_first_batches"]

RANDOM_STATE_KEY = "random_state"


def capture_random_state() -> dict[str, Any]:
    """Python, NumPy and torch generator states as tensors and ints (loadable with
    ``torch.load(weights_only=True)``)."""
    version, python_state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "python_version": int(version), "python_gauss": gauss,
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_position": int(position), "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached), "numpy_kind": str(kind),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_random_state` returned."""
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state((state["numpy_kind"], state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_position"], state["numpy_has_gauss"],
                         state["numpy_cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class _SkipFirst(Sampler):
    """Yield what `inner` yields, without its first `count` items."""

    def __init__(self, inner: Any, count: int) -> None:
        self.inner, self.count = inner, count

    def __iter__(self) -> Iterator:
        return itertools.islice(iter(self.inner), self.count, None)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.count)


def skip_first_batches(loader: DataLoader, batches: int) -> DataLoader:
    """A loader over the same data, sampler state and collation, minus its first `batches`
    batches; the skipped samples are never loaded."""
    common = dict(num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                  pin_memory=loader.pin_memory, timeout=loader.timeout,
                  worker_init_fn=loader.worker_init_fn, generator=loader.generator)
    if loader.num_workers > 0:
        common["prefetch_factor"] = loader.prefetch_factor
    if loader.batch_size is None:  # a custom batch sampler: skip whole batches of it
        return DataLoader(loader.dataset, batch_sampler=_SkipFirst(loader.batch_sampler, batches),
                          **common)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, drop_last=loader.drop_last,
                      sampler=_SkipFirst(loader.sampler, batches * loader.batch_size), **common)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the generator states in each checkpoint; on resume hands them to the loop
    (which restores them right before the first resumed batch) or restores them at once."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RANDOM_STATE_KEY] = capture_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(RANDOM_STATE_KEY)
        if state is None or not getattr(runner, "_resume", False):
            return  # `load_from` (fine-tuning, testing) keeps this run's own seeding
        loop = getattr(runner, "_train_loop", None)
        if isinstance(loop, ResumableEpochBasedTrainLoop):
            loop.pending_random_state = state
        else:
            restore_random_state(state)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes mid-epoch where it stopped (module docstring).

    Same arguments as mmengine's loop. Use with an iteration checkpoint interval, e.g.
    ``default_hooks.checkpoint = dict(type='CheckpointHook', interval=500, by_epoch=False)``.
    """

    def __init__(self, runner, dataloader, max_epochs: int, val_begin: int = 1,
                 val_interval: int = 1, dynamic_intervals: Optional[list] = None) -> None:
        super().__init__(runner, dataloader, max_epochs, val_begin, val_interval,
                         dynamic_intervals)
        self.pending_random_state: Optional[dict] = None
        if not any(isinstance(hook, RandomStateHook) for hook in runner.hooks):
            runner.register_hook(RandomStateHook())

    def run_epoch(self) -> None:
        """One epoch; after a mid-epoch resume, only the batches not yet trained on."""
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        per_epoch = len(self.dataloader)
        done = self._iter - self._epoch * per_epoch
        loader = self.dataloader
        if done >= per_epoch > 0:
            # Saved after the epoch's last batch but before the epoch ended (an iteration
            # checkpoint on the boundary, or a preemption there): no batch is left, only
            # the end of the epoch (its hooks, its validation). The uninterrupted run drew
            # this epoch's iterator before the saved generator states, so none is drawn.
            print_log(f"resuming epoch {self._epoch + 1} after its last batch: no batch "
                      "left to train on", logger="current")
            batches: Iterator = iter(())
        else:
            if 0 < done < per_epoch:
                print_log(f"resuming epoch {self._epoch + 1} after batch {done} of "
                          f"{per_epoch}: skipping the {done} batches already trained on",
                          logger="current")
                loader = skip_first_batches(self.dataloader, done)
            else:
                done = 0
            batches = iter(loader)  # creating the iterator draws from torch's generator
        if self.pending_random_state is not None:
            restore_random_state(self.pending_random_state)
            self.pending_random_state = None
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1
