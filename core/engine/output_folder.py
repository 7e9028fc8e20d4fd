"""The output folder of a batch-inference run: its manifest, and knowing when the folder
itself fails (full, read-only, removed) rather than one input.

- :meth:`OutputFolder.open` creates the folder, checks the manifest can be appended to
  (:class:`OutputFolderError` otherwise, before any input runs) and remembers the
  folder's identity (device, inode), so a folder removed or replaced mid-run is noticed
  even when a writer's ``makedirs`` has recreated it;
- :meth:`OutputFolder.append` writes one manifest record as one ``write`` of a whole line
  on an ``O_APPEND`` descriptor, so lines from processes sharing the manifest never
  interleave, and never into a folder that is no longer the run's;
- :func:`is_folder_errno` tells a full disk, a quota or a read-only file system (later
  inputs would fail the same way) from an error of one input;
- :func:`remove_temporaries_of` clears the temporary files a killed process left for one
  output (named as :mod:`.atomic_files` names them).
"""
from __future__ import annotations

import errno
import glob
import json
import os
from typing import Optional

__all__ = ["OutputFolder", "OutputFolderError", "is_folder_errno", "remove_temporaries_of"]

# errno values that mean the output folder itself is failing, not one input.
_FOLDER_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


class OutputFolderError(OSError):
    """The output folder cannot be written at all (checked before any input runs)."""


def is_folder_errno(error: Optional[BaseException]) -> bool:
    """Whether `error` (or what caused it) is a full disk, a quota or a read-only file
    system: a fault of the output folder, so later inputs would fail the same way."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in _FOLDER_ERRNOS:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def remove_temporaries_of(out_path: str, pid: int) -> list[str]:
    """Remove the temporary files process `pid` left for `out_path`
    (``dir/.NAME.tmp-<pid>-<random>.EXT``); return their paths."""
    directory, name = os.path.split(out_path)
    head = name.lstrip(".").partition(".")[0]
    removed = []
    for path in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(head)}.tmp-{pid}-*")):
        try:
            os.remove(path)
            removed.append(path)
        except OSError:
            pass
    return removed


class OutputFolder:
    """`path` and its manifest file `manifest_name` for one run (see the module doc)."""

    def __init__(self, path: str, manifest_name: str = "manifest.jsonl") -> None:
        self.path = os.path.abspath(path)
        self.manifest_path = os.path.join(self.path, manifest_name)
        self._identity: Optional[tuple[int, int]] = None

    def open(self) -> None:
        """Create the folder, check the manifest can be appended to, note the identity.

        Raises:
            OutputFolderError: the folder or its manifest cannot be created or written.
        """
        try:
            os.makedirs(self.path, exist_ok=True)
            os.close(os.open(self.manifest_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666))
        except OSError as error:
            raise OutputFolderError(error.errno, f"cannot write to the output folder "
                                    f"{self.path}: {error.strerror or error}") from None
        info = os.stat(self.path)
        self._identity = (info.st_dev, info.st_ino)

    def is_ours(self) -> bool:
        """Whether the folder still exists and is the one :meth:`open` saw."""
        try:
            info = os.stat(self.path)
        except OSError:
            return False
        return self._identity is None or (info.st_dev, info.st_ino) == self._identity

    def problem(self, record: dict) -> Optional[str]:
        """Why the run must stop after `record`, judged from the folder (None: go on)."""
        if not self.is_ours():
            return f"output folder {self.path} was removed or replaced during the run"
        if record["status"] == "failed" and not os.access(self.path, os.W_OK):
            return f"output folder {self.path} is not writable: {record['error']}"
        return None

    def append(self, record: dict) -> Optional[str]:
        """Append `record` as one JSON line; None, or why it could not be written."""
        if not self.is_ours():
            return f"output folder {self.path} was removed or replaced during the run"
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            fd = os.open(self.manifest_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                written = os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as error:
            return f"cannot append to the manifest {self.manifest_path}: {error}"
        if written != len(line):  # a full disk can cut a write short
            return (f"the manifest {self.manifest_path} took {written} of {len(line)} bytes "
                    "(disk full?)")
        return None
