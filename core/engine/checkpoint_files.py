"""Checkpoint files on disk: written atomically, and the one to resume from chosen with
care.

- :func:`install_atomic_checkpoint_saver` makes mmengine's ``Runner.save_checkpoint``
  write local checkpoints to a hidden temporary file in the target folder, flush it to
  disk and rename it onto the final name (:mod:`atomic_files`). A process killed while
  saving leaves the previous checkpoint whole and no half-written ``iter_N.pth``. mmengine
  has no hook for the writer, so the ``save_checkpoint`` function its runner module calls
  is replaced (remote URIs still go to mmengine's own). It runs on import of this module.
- :func:`resumable_checkpoint` picks what ``--resume`` without a path resumes from: the
  file ``work_dir/last_checkpoint`` names if it loads, else the newest checkpoint in the
  folder that does, logging the bad file and why it was passed over.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from mmengine.logging import print_log

from .atomic_files import atomic_write
from .checkpoint import CheckpointError, load_checkpoint_file

__all__ = ["save_checkpoint_atomic", "install_atomic_checkpoint_saver", "resumable_checkpoint",
           "checkpoint_problem"]


def _mmengine_save_checkpoint() -> Callable:
    from mmengine.runner import checkpoint as mmengine_checkpoint
    return mmengine_checkpoint.save_checkpoint


def save_checkpoint_atomic(checkpoint: dict, filename: str, file_client_args: Optional[dict] = None,
                           backend_args: Optional[dict] = None) -> None:
    """mmengine's ``save_checkpoint`` (same arguments), atomic for local paths: the file
    appears under `filename` whole or not at all, with the umask's permissions."""
    if file_client_args is not None or backend_args is not None or "://" in str(filename):
        _mmengine_save_checkpoint()(checkpoint, filename, file_client_args=file_client_args,
                                    backend_args=backend_args)
        return
    with atomic_write(filename, "wb") as stream:
        torch.save(checkpoint, stream)


def install_atomic_checkpoint_saver() -> bool:
    """Make ``Runner.save_checkpoint`` write through :func:`save_checkpoint_atomic`.
    Idempotent; returns True if installed now, False if it already was."""
    from mmengine.runner import runner as runner_module

    if runner_module.save_checkpoint is save_checkpoint_atomic:
        return False
    runner_module.save_checkpoint = save_checkpoint_atomic
    return True


install_atomic_checkpoint_saver()


# --- choosing what to resume from ----------------------------------------------------------

def checkpoint_problem(path: str) -> Optional[str]:
    """None if `path` loads as a checkpoint (``weights_only=True``), else why not."""
    try:
        checkpoint = load_checkpoint_file(path, map_location="cpu")
    except (FileNotFoundError, CheckpointError) as error:
        return str(error)
    if not isinstance(checkpoint.get("meta"), dict) or "state_dict" not in checkpoint:
        return f"{path} is not a training checkpoint (no 'meta' / 'state_dict' to resume from)"
    return None


def _recorded(work_dir: Path) -> tuple[Optional[str], Optional[str]]:
    """(the path ``last_checkpoint`` names, the problem with the record itself)."""
    record = work_dir / "last_checkpoint"
    if not record.is_file():
        return None, None
    try:
        named = record.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        return None, f"{record} cannot be read: {error}"
    return (named, None) if named else (None, f"{record} is empty")


def resumable_checkpoint(work_dir: str | os.PathLike,
                         log: Callable[[str], Any] = lambda message: print_log(
                             message, logger="current", level=logging.WARNING)) -> Optional[str]:
    """The checkpoint ``--resume`` (no path) should resume from.

    The file ``work_dir/last_checkpoint`` names (mmengine's record of the latest save)
    when it loads; otherwise the newest (by modification time) ``*.pth`` in the work dir
    and in the folder of the recorded file that loads, after logging each file passed
    over and why (truncated, not a checkpoint, missing).

    Returns:
        The path, or None when the work dir holds no checkpoint and no record (a fresh
        run: training starts from scratch, as mmengine's own ``resume=True`` does).

    Raises:
        CheckpointError: checkpoints or a record exist but none loads; the message lists
            each file and its problem.
    """
    work_dir = Path(work_dir)
    named, record_problem = _recorded(work_dir)
    problems: list[str] = []
    if record_problem:
        problems.append(record_problem)
        log(f"--resume: {record_problem}; looking for the newest valid checkpoint instead")
    folders = {work_dir} | ({Path(named).parent} if named else set())
    # hidden files are other writers' unfinished temporaries (atomic_files)
    others = [p for folder in folders if folder.is_dir() for p in folder.glob("*.pth")
              if p.is_file() and not p.name.startswith(".")]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    candidates = ([named] if named else []) + [str(p) for p in others]
    for path in dict.fromkeys(osp.realpath(c) for c in candidates):
        problem = checkpoint_problem(path)
        if problem is None:
            if problems:
                log(f"--resume: resuming from {path}, the newest valid checkpoint in "
                    f"{work_dir} ({len(problems)} problem(s) above passed over)")
            return path
        problems.append(problem)
        log(f"--resume: cannot resume from {path}: {problem}")
    if problems:
        raise CheckpointError(f"--resume: no usable checkpoint in {work_dir}: "
                              + "; ".join(problems))
    return None
