"""Training hooks for MGCA-style pre-training."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from interlace.core.engine.registry import HOOKS

__all__ = ["PrototypeFreezeHook"]


@HOOKS.register_module()
class PrototypeFreezeHook(Hook):
    """Tell the model the epoch before each training epoch, so the prototype loss keeps
    its prototypes frozen during the first ``freeze_epochs`` (MGCA: 1) and then trains them.

    The model must have ``set_epoch(epoch)`` (as :class:`MGCA`); DDP wrappers are unwrapped.
    """

    priority = "NORMAL"

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, "set_epoch"):
            raise AttributeError(f"PrototypeFreezeHook: {type(model).__name__} has no set_epoch")
        model.set_epoch(runner.epoch)
