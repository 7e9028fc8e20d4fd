"""Training hooks for MGCA-style pre-training."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from interlace.core.engine.registry import HOOKS

__all__ = ["PrototypeFreezeHook"]


@HOOKS.register_module()
class PrototypeFreezeHook(Hook):
    """Tell the model the epoch before each training epoch, so the prototype loss keeps
    its prototypes frozen during the first ``freeze_epochs`` (MGCA: 1) and then trains them.

    The model must have ``set_epoch(epoch)`` (as :class:`MGCA`); DDP wrappers are unwrapped.
    Under an iteration-based loop (a budgeted run), the epoch is the number of full passes
    over the training loader so far.
    """

    priority = "NORMAL"

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, "set_epoch"):
            raise AttributeError(f"PrototypeFreezeHook: {type(model).__name__} has no set_epoch")
        return model

    def before_train_epoch(self, runner) -> None:
        self._model(runner).set_epoch(runner.epoch)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            return  # the epoch hook keeps count
        passes = runner.iter // max(1, len(runner.train_dataloader))
        self._model(runner).set_epoch(passes)
