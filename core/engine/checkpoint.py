"""Safe checkpoint loading: ``torch.load(weights_only=True)`` with clear errors.

Three layers:

- :func:`load_checkpoint_file` reads a file with ``weights_only=True`` and turns every
  failure into an error that names the file (missing, unreadable, refused global, not a
  state dict).
- :func:`install_safe_checkpoint_loader` makes mmengine (``Runner.resume``,
  ``load_from``, ``init_cfg=dict(type='Pretrained')``) read local files through it. With
  ``weights_only=True`` mmengine's own checkpoints need a handful of extra globals (the
  message hub's ``HistoryBuffer`` and the numpy arrays inside it); exactly those are
  allowlisted, only for the duration of our loads. It runs on import of this module.
- :func:`load_weights` / :func:`load_backbone_weights` copy weights into a module with an
  optional key mapping, reporting missing, unexpected and shape-mismatched keys instead
  of failing deep inside ``load_state_dict``.
"""
from __future__ import annotations

import os
import pickle
import re
import sys
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    "CheckpointError", "UnsafeCheckpointError", "LoadReport", "load_checkpoint_file",
    "extract_state_dict", "load_weights", "load_backbone_weights",
    "install_safe_checkpoint_loader", "mmengine_safe_globals",
]

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint file exists but cannot be used (unreadable, wrong content)."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """``weights_only=True`` refused a global in the file. ``refused`` names it when known."""

    def __init__(self, message: str, refused: Optional[str] = None) -> None:
        super().__init__(message)
        self.refused = refused


# --- the allowlist for mmengine's own checkpoints ------------------------------------

# HistoryBuffer pickles its ``_statistics_methods`` dict, whose values are the class's
# own functions; with pickle protocol 2 a nested name is written as
# ``getattr(HistoryBuffer, 'mean')``. Allowlisting ``builtins.getattr`` itself would let
# a file walk from any object to ``__globals__`` and run code, so the global is bound to
# this function, which hands out only those four functions.
_HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to ``HistoryBuffer.<statistic>`` (see above)."""
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"Refused call getattr({getattr(obj, '__qualname__', type(obj).__name__)}, {name!r}): "
        f"under weights_only only HistoryBuffer.{{{','.join(_HISTORY_BUFFER_STATISTICS)}}} "
        "may be looked up")


def _numpy_globals() -> list[tuple[Callable, str]]:
    """numpy arrays, dtypes and scalars as pickled by numpy 1.x and 2.x."""
    try:  # numpy >= 2 moved numpy.core to numpy._core
        from numpy._core import multiarray  # type: ignore[attr-defined]
    except ImportError:
        from numpy.core import multiarray  # type: ignore[no-redef]
    found: list[tuple[Callable, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    # Unpickling a dtype ends in BUILD on the dtype instance, whose class (numpy >= 1.25:
    # numpy.dtypes.Float64DType, ...) must be allowed too; only the plain numeric ones.
    for char in "?bhilqBHILQefdgFDG":
        dtype_class = type(np.dtype(char))
        found.append((dtype_class, f"{dtype_class.__module__}.{dtype_class.__qualname__}"))
    for core in ("numpy.core", "numpy._core"):
        found.append((multiarray._reconstruct, f"{core}.multiarray._reconstruct"))
        found.append((multiarray.scalar, f"{core}.multiarray.scalar"))
    return found


def mmengine_safe_globals() -> list[tuple[Callable, str]]:
    """The globals, beyond torch's defaults, that an mmengine checkpoint (``meta``,
    ``state_dict``, ``message_hub``, ``optimizer``, ``param_schedulers``) needs, each
    paired with the name it is pickled under."""
    return [
        (HistoryBuffer, "mmengine.logging.history_buffer.HistoryBuffer"),
        (_history_buffer_getattr, "builtins.getattr"),
        *_numpy_globals(),
    ]


@contextmanager
def _allow(extra: Sequence[tuple[Callable, str]]) -> Iterator[None]:
    """Allowlist `extra` for the duration of the block, leaving entries the user had
    added with ``torch.serialization.add_safe_globals`` in place afterwards.

    Scoped rather than process-wide so that other ``torch.load`` calls stay as strict as
    torch makes them. The allowlist is global state: loads from several threads at once
    could see each other's additions (never more than this list)."""
    present = set(torch.serialization.get_safe_globals())
    missing = [g for g in extra if g not in present]
    with torch.serialization.safe_globals(missing):
        yield


# --- reading a file --------------------------------------------------------------------

_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+?)(?: was not an allowed global| whose module)"
                             r"|but got <class '([^']+)'>")
_REFUSAL_MARKERS = ("Unsupported global", "is blocked", "Refused call getattr",
                    "Trying to call reduce for unrecognized function",
                    "Can only create new object", "Can only build")


def _unpickler_reason(message: str) -> str:
    """The unpickler's own sentence out of torch's long weights_only message."""
    _, _, tail = message.partition("WeightsUnpickler error:")
    for line in (tail or message).splitlines():
        line = line.strip()
        if line and not line.startswith(("Weights only load failed", "Check the documentation")):
            return line
    return message.strip().splitlines()[0] if message.strip() else "unpickling failed"


def _is_module_class(qualified: str) -> bool:
    """Whether `qualified` names an already imported ``nn.Module`` subclass. Looks only
    in ``sys.modules``: a name read from an untrusted file is never imported."""
    module_name, _, name = qualified.rpartition(".")
    obj = getattr(sys.modules.get(module_name), name, None)
    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def load_checkpoint_file(path: PathLike, map_location: Any = "cpu",
                         weights_only: bool = True) -> dict:
    """Load a checkpoint or state dict from a local file.

    Args:
        path: the file (``~`` is expanded).
        map_location: as for :func:`torch.load`.
        weights_only: unpickle only tensors, containers and allowlisted types (torch's
            defaults plus :func:`mmengine_safe_globals`). Pass ``False`` only for files
            you trust: unpickling arbitrary objects can run arbitrary code.

    Returns:
        The mapping stored in the file (a state dict or an mmengine checkpoint).

    Raises:
        FileNotFoundError: `path` does not exist or is not a file.
        UnsafeCheckpointError: ``weights_only`` refused a global in the file.
        CheckpointError: torch cannot read the file, or it holds no mapping.
    """
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        what = "is a directory, not a checkpoint file" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"Checkpoint {path} {what}.")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"Checkpoint {path} cannot be read: the file is empty.")
    try:
        with _allow(mmengine_safe_globals() if weights_only else []):
            checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(str(error))
        if weights_only and any(marker in str(error) for marker in _REFUSAL_MARKERS):
            match = _REFUSED_GLOBAL.search(reason)
            refused = (match.group(1) or match.group(2)) if match else None
            if refused and _is_module_class(refused):
                raise UnsafeCheckpointError(
                    f"{path} is not a state dict or checkpoint: it holds a pickled {refused} "
                    "(a whole nn.Module). Save model.state_dict() instead, or pass "
                    "weights_only=False only for a file you trust.", refused=refused) from None
            what = f"the global '{refused}'" if refused else f"a call ({reason})"
            raise UnsafeCheckpointError(
                f"Checkpoint {path} was refused by torch.load(weights_only=True): it needs "
                f"{what}, which is not on the allowlist. Pass weights_only=False only for "
                "a file you trust (unpickling it can run arbitrary code).",
                refused=refused) from None
        raise CheckpointError(f"Checkpoint {path} cannot be read by torch.load: {reason}") from None
    except Exception as error:  # zip/pickle/storage errors all mean "not a torch file"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "(no message)"
        raise CheckpointError(f"Checkpoint {path} cannot be read by torch.load: "
                              f"{type(error).__name__}: {reason}") from None
    if not isinstance(checkpoint, Mapping):
        kind = f"{type(checkpoint).__module__}.{type(checkpoint).__qualname__}"
        raise CheckpointError(f"{path} is not a state dict or checkpoint: it holds a {kind}"
                              " (save model.state_dict() instead of the object).")
    return checkpoint if isinstance(checkpoint, dict) else dict(checkpoint)


# --- mmengine integration --------------------------------------------------------------

def load_from_safe_local(filename: str, map_location: Any = None) -> dict:
    """mmengine ``CheckpointLoader`` scheme for local paths (prefix ``''``), reading
    through :func:`load_checkpoint_file` with ``weights_only=True``."""
    return load_checkpoint_file(filename, map_location=map_location, weights_only=True)


def install_safe_checkpoint_loader() -> bool:
    """Make mmengine read local checkpoints with :func:`load_from_safe_local`.

    mmengine picks a loader by matching its registered prefixes as regexes, longest
    first; the local loader has the empty prefix, the fallback for every plain path.
    Replacing it fixes ``Runner.resume`` under torch >= 2.6, whose ``weights_only=True``
    default refuses ``HistoryBuffer``. Idempotent.

    Returns:
        True if the loader was installed now, False if it already was.
    """
    if CheckpointLoader._schemes.get("") is load_from_safe_local:
        return False
    CheckpointLoader.register_scheme(prefixes="", loader=load_from_safe_local, force=True)
    return True


install_safe_checkpoint_loader()


# --- state dicts and weight loading ----------------------------------------------------

def extract_state_dict(checkpoint: Mapping) -> "OrderedDict[str, torch.Tensor]":
    """The tensors of a checkpoint, with a leading DDP ``module.`` stripped from keys.

    Looks under ``state_dict``, then ``model``, then ``module``; otherwise treats
    `checkpoint` as the state dict itself. Non-tensor entries are dropped.

    Raises:
        CheckpointError: no tensors found; the message lists the top-level keys.
    """
    source: Mapping = checkpoint
    for key in ("state_dict", "model", "module"):
        if isinstance(checkpoint.get(key), Mapping):
            source = checkpoint[key]
            break
    tensors: OrderedDict[str, torch.Tensor] = OrderedDict(
        (_strip_module(k), v) for k, v in source.items() if isinstance(v, torch.Tensor))
    if not tensors:
        keys = ", ".join(map(repr, list(checkpoint)[:10])) or "none"
        more = f" (+{len(checkpoint) - 10} more)" if len(checkpoint) > 10 else ""
        raise CheckpointError(f"No tensors found in the checkpoint: looked under 'state_dict', "
                              f"'model', 'module' and at the top level; its keys are {keys}{more}.")
    metadata = getattr(source, "_metadata", None)
    if metadata is not None:  # module versions (e.g. BatchNorm) used by load_state_dict
        tensors._metadata = OrderedDict((_strip_module(k), v) for k, v in metadata.items())  # type: ignore[attr-defined]
    return tensors


def _strip_module(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


@dataclass
class LoadReport:
    """What a weight load did. ``shape_mismatched`` holds (key, checkpoint shape, model
    shape); those keys were skipped and are not in ``missing``."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every model key loaded and every checkpoint key used."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def summary(self, limit: int = 5) -> str:
        """One line: counts, and the first few keys of each problem."""
        def some(keys: Sequence[str]) -> str:
            shown = ", ".join(keys[:limit])
            return shown + (f", ... (+{len(keys) - limit})" if len(keys) > limit else "")
        parts = [f"loaded {len(self.loaded)}"]
        if self.missing:
            parts.append(f"missing {len(self.missing)} [{some(self.missing)}]")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)} [{some(self.unexpected)}]")
        if self.shape_mismatched:
            shown = [f"{k} {tuple(c)} vs model {tuple(m)}" for k, c, m in self.shape_mismatched]
            parts.append(f"shape-mismatched {len(shown)} [{some(shown)}]")
        return "; ".join(parts)


def _map_keys(state: Mapping[str, torch.Tensor], key_mapping: Sequence[tuple[str, str]],
              source_prefix: Optional[str], path: str) -> "OrderedDict[str, torch.Tensor]":
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    origin: dict[str, str] = {}
    rules = [(re.compile(pattern), replacement) for pattern, replacement in key_mapping]
    for key, value in state.items():
        if source_prefix:
            if not key.startswith(source_prefix):
                continue
            key_in = key
            key = key[len(source_prefix):]
        else:
            key_in = key
        for pattern, replacement in rules:
            key = pattern.sub(replacement, key)
        if key in mapped:
            raise CheckpointError(f"Key mapping for {path} sends both '{origin[key]}' and "
                                  f"'{key_in}' to '{key}'; fix the mapping.")
        mapped[key], origin[key] = value, key_in
    if source_prefix and not mapped:
        raise CheckpointError(f"No key of {path} starts with source_prefix '{source_prefix}' "
                              f"(first keys: {', '.join(list(state)[:5])}).")
    return mapped


def load_backbone_weights(module: torch.nn.Module, path: PathLike,
                          key_mapping: Sequence[tuple[str, str]] = (),
                          source_prefix: Optional[str] = None, strict: bool = False,
                          map_location: Any = "cpu") -> LoadReport:
    """Copy weights from a local file into `module`, renaming keys first.

    Args:
        module: the receiver; its ``state_dict()`` keys are the targets.
        path: a state dict or checkpoint file (read with ``weights_only=True``).
        key_mapping: ``(regex, replacement)`` pairs applied with :func:`re.sub` in order
            to every checkpoint key (after `source_prefix` is stripped).
        source_prefix: keep only checkpoint keys starting with this and strip it, e.g.
            ``'backbone.'`` to take the backbone out of a whole detector's checkpoint.
        strict: raise :class:`CheckpointError` (before copying anything) unless every
            key matched with the right shape.

    Returns:
        A :class:`LoadReport`. Shape mismatches are skipped and reported with both shapes.

    Example:
        torchvision-style ResNet keys into a module that wraps the ResNet as
        ``self.backbone`` (and has no classifier): ``layer1.0.conv1.weight`` becomes
        ``backbone.layer1.0.conv1.weight``; ``fc.*`` has no target and is reported as
        unexpected::

            report = load_backbone_weights(
                detector, "resnet50.pth",
                key_mapping=[(r"^", "backbone.")])
            print(report.unexpected)   # ['fc.weight', 'fc.bias']
    """
    path = os.fspath(path)
    state = extract_state_dict(load_checkpoint_file(path, map_location=map_location))
    report = copy_matching_weights(module, _map_keys(state, key_mapping, source_prefix, path),
                                   path, strict)
    print_log(f"Loaded weights from {path} into {type(module).__name__}: {report.summary()}",
              logger="current")
    return report


def copy_matching_weights(module: torch.nn.Module, mapped: Mapping[str, torch.Tensor],
                          path: str, strict: bool) -> LoadReport:
    """Copy the tensors of `mapped` whose names and shapes fit `module`; report the rest.
    With `strict`, raise (before copying anything) unless everything fits."""
    target = module.state_dict()
    report = LoadReport()
    to_load: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in mapped.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.shape_mismatched.append((key, tuple(value.shape), tuple(target[key].shape)))
        else:
            to_load[key] = value
            report.loaded.append(key)
    mismatched = {k for k, _, _ in report.shape_mismatched}
    report.missing = [k for k in target if k not in to_load and k not in mismatched]
    if strict and not report.complete:
        raise CheckpointError(f"Weights in {path} do not match {type(module).__name__} "
                              f"(strict): {report.summary()}")
    # strict=False: we have already decided what goes in; torch only copies.
    module.load_state_dict(to_load, strict=False)
    return report


def load_weights(model: torch.nn.Module, path: PathLike, strict: bool = True,
                 key_mapping: Optional[Sequence[tuple[str, str]]] = None,
                 prefix: Optional[str] = None, map_location: Any = "cpu") -> LoadReport:
    """Load a whole model's weights (a checkpoint from training, for inference).

    Like :func:`load_backbone_weights` but strict by default; `prefix` keeps only the
    checkpoint keys under it and strips it (as ``source_prefix`` there).
    """
    return load_backbone_weights(model, path, key_mapping=key_mapping or (),
                                 source_prefix=prefix, strict=strict, map_location=map_location)
