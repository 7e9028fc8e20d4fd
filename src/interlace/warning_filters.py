"""Known warnings raised inside third-party packages, silenced by message.

They are filtered where a program starts (the demo's commands, the test suite), never by
the library on import and never for a whole category, so a new deprecation, ours or a
dependency's, still shows.

Each entry is a ``-W`` / ``PYTHONWARNINGS`` filter, ``action:message:category:module``:
`message` is the literal start of the warning's text and `module` the exact module the
warning is attributed to (empty: any). Add one only for a warning raised inside a package
this project cannot change; a warning our own code causes is fixed, not filtered.

Used by ``tests/conftest.py`` (added to pytest's ``filterwarnings``) and by
``tools/demo.py`` (``PYTHONWARNINGS`` of the commands it runs); an entry point can call
:func:`ignore_known_warnings`.

mmengine reports some of its own deprecations through its logger instead of the warnings
module; :class:`KnownLogMessageFilter` drops those (the runner's logger gets it when
``interlace.core.engine.cli.build_runner`` builds a runner).
"""
from __future__ import annotations

import builtins
import logging
import re
import warnings
from typing import NamedTuple, Optional

__all__ = ["KNOWN_THIRD_PARTY_WARNINGS", "KNOWN_THIRD_PARTY_LOG_MESSAGES", "WarningFilter",
           "parse_filter", "ignore_known_warnings", "pythonwarnings", "filterwarnings_lines",
           "KnownLogMessageFilter"]

KNOWN_THIRD_PARTY_WARNINGS: tuple[str, ...] = (
    # torch deprecates TorchScript, and torch.distributed.optim scripts its functional
    # optimisers when it is imported (mmengine.runner imports it).
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning:torch.jit._script",
    "ignore:`torch.jit.interface` is deprecated:DeprecationWarning:torch.jit._script",
    # ccimport (spconv's build helper) reads the locale with a function Python 3.15 removes.
    "ignore:'locale.getdefaultlocale' is deprecated:DeprecationWarning:ccimport.buildtools.writer",
    # spconv 2.3's SparseConvTensor.dense() indexes with a list (its own code, harmless).
    "ignore:Using a non-tuple sequence for multidimensional indexing:UserWarning:",
)

# Starts of log messages mmengine prints (print_log, level WARNING) about its own API.
KNOWN_THIRD_PARTY_LOG_MESSAGES: tuple[str, ...] = (
    # mmengine's CheckpointHook builds a FileClient on every run, whatever the config says.
    '"FileClient" will be deprecated in future.',
    '"HardDiskBackend" is the alias of "LocalBackend"',
)


class WarningFilter(NamedTuple):
    """One parsed entry of :data:`KNOWN_THIRD_PARTY_WARNINGS`."""

    action: str
    message: str
    category: type[Warning]
    module: str


def parse_filter(spec: str) -> WarningFilter:
    """``action:message:category:module`` -> :class:`WarningFilter`; the category must be
    a built-in warning class."""
    parts = spec.split(":")
    if len(parts) != 4 or "," in spec:  # PYTHONWARNINGS separates filters by commas
        raise ValueError(f"warning filter {spec!r}: expected action:message:category:module "
                         "with no ':' or ',' inside the message")
    action, message, category_name, module = parts
    category = getattr(builtins, category_name, None)
    if not (isinstance(category, type) and issubclass(category, Warning)):
        raise ValueError(f"warning filter {spec!r}: {category_name!r} is not a built-in "
                         "warning category")
    return WarningFilter(action, message, category, module)


def ignore_known_warnings(filters: Optional[tuple[str, ...]] = None) -> None:
    """Install `filters` (default :data:`KNOWN_THIRD_PARTY_WARNINGS`) in this process, as
    ``python -W`` would: message as a literal prefix, module as an exact name."""
    for spec in filters or KNOWN_THIRD_PARTY_WARNINGS:
        f = parse_filter(spec)
        warnings.filterwarnings(f.action, message=re.escape(f.message), category=f.category,
                                module=re.escape(f.module) + r"\Z" if f.module else "")


def pythonwarnings(existing: Optional[str] = None) -> str:
    """A ``PYTHONWARNINGS`` value for child processes: `existing` (the user's own filters,
    which keep precedence) after the known ones."""
    known = ",".join(KNOWN_THIRD_PARTY_WARNINGS)
    return f"{known},{existing}" if existing else known


def filterwarnings_lines() -> list[str]:
    """The known filters as pytest ``filterwarnings`` lines (regular expressions)."""
    lines = []
    for spec in KNOWN_THIRD_PARTY_WARNINGS:
        f = parse_filter(spec)
        lines.append(f"{f.action}:{re.escape(f.message)}:{f.category.__name__}:"
                     f"{re.escape(f.module)}")
    return lines


class KnownLogMessageFilter(logging.Filter):
    """Drops log records whose message starts with one of `messages` (default
    :data:`KNOWN_THIRD_PARTY_LOG_MESSAGES`); every other record passes."""

    def __init__(self, messages: Optional[tuple[str, ...]] = None) -> None:
        super().__init__()
        self.messages = tuple(messages or KNOWN_THIRD_PARTY_LOG_MESSAGES)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.messages)
