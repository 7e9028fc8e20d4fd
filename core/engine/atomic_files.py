"""Atomic file writes: a reader never sees a half-written output.

Every output goes to a hidden, uniquely named sibling of its final path, is flushed to
disk and then renamed onto the final path with :func:`os.replace` (atomic on POSIX
within one file system). On any failure, Ctrl-C included, the temporary file is removed
and an existing file under the final name is left untouched.

Files are created with mode ``0o666`` masked by the process umask, as :func:`open`
creates them (``0644`` under umask ``022``), so outputs on a shared machine are as
readable as any other file the user writes. (:func:`tempfile.mkstemp` would make every
output ``0600``.)

- :func:`atomic_write` yields an open file object;
- :func:`atomic_path` yields a temporary path for libraries that open the file
  themselves (rasterio, PIL, ``torch.save``, nibabel, matplotlib);
- :func:`write_bytes_atomic`, :func:`write_text_atomic`, :func:`write_json_atomic` write
  a whole payload at once;
- :func:`temporary_sibling` is a scratch file next to an output, always removed (for an
  intermediate such as the GTiff a COG is copied from).

``fsync=False`` skips flushing to disk (about 10 ms a file) where the files are many and
can be made again, such as a generated data set; the rename stays atomic.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator, Optional

__all__ = ["atomic_write", "atomic_path", "temporary_sibling", "write_bytes_atomic",
           "write_text_atomic", "write_json_atomic"]

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _sibling_name(path: Path, tag: str) -> Path:
    """``dir/.NAME.<tag>-<pid>-<random>.EXT``: hidden, unique, and ending in all of the
    final name's extensions (``x.nii.gz`` -> ``.x.tmp-42-1a2b3c4d.nii.gz``), because many
    writers pick the format from them."""
    head, dot, rest = path.name.lstrip(".").partition(".")
    return path.with_name(f".{head}.{tag}-{os.getpid()}-{secrets.token_hex(4)}{dot}{rest}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def temporary_sibling(path: str | os.PathLike, *, tag: str = "tmp",
                      create: bool = True) -> Iterator[Path]:
    """Yield a hidden, unique path in `path`'s folder (created, with the parents);
    the file is removed on exit whatever happens, unless something moved it away.

    ``create=True`` reserves the name by creating an empty file with the umask's mode;
    ``create=False`` leaves creating it to the writer (the name is still unique).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _sibling_name(path, tag)
    try:
        if create:
            os.close(os.open(temp, _CREATE_FLAGS, 0o666))
        yield temp
    finally:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, create: bool = True,
                fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to; when the block ends normally
    the file is fsynced and renamed onto `path`, on any exception it is removed and
    `path` is left as it was.

    Example::

        with atomic_path("maps/x.tif") as temp:
            with rasterio.open(temp, "w", **profile) as dst: ...

    ``create=False`` does not create the temporary file beforehand; the block must then
    create it, or :class:`FileNotFoundError` names the missing file.
    """
    path = Path(path)
    with temporary_sibling(path, create=create) as temp:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"{temp}: the writer of {path} did not create its "
                                    "temporary file")
        if fsync:
            _fsync_file(temp)
        os.replace(temp, path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *,
                 encoding: Optional[str] = None, newline: Optional[str] = None,
                 fsync: bool = True) -> Iterator[IO[Any]]:
    """Yield a file object open on a temporary sibling of `path` (`mode` ``"w"`` /
    ``"wt"`` for text, ``"wb"`` for bytes); the file replaces `path` when the block ends
    normally and is removed on any exception.

    Text mode defaults to UTF-8. Example::

        with atomic_write("out/table.csv", "w", newline="") as stream:
            csv.writer(stream).writerows(rows)
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write mode must be 'w', 'wt' or 'wb', got {mode!r}")
    if "b" in mode:
        if encoding is not None or newline is not None:
            raise ValueError("encoding / newline apply to text mode only")
    elif encoding is None:
        encoding = "utf-8"
    with atomic_path(path, fsync=False) as temp:
        with open(temp, mode, encoding=encoding, newline=newline) as stream:
            yield stream
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically; return the path."""
    with atomic_write(path, "wb", fsync=fsync) as stream:
        stream.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
                      newline: Optional[str] = None, fsync: bool = True) -> Path:
    """Write `text` to `path` atomically; return the path."""
    with atomic_write(path, "w", encoding=encoding, newline=newline, fsync=fsync) as stream:
        stream.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload: Any, *, indent: Optional[int] = 2,
                      allow_nan: bool = True, fsync: bool = True) -> Path:
    """Write `payload` as JSON to `path` atomically; return the path.

    ``allow_nan=False`` refuses NaN / infinity (``ValueError``), for formats whose readers
    reject them; the previous file, if any, stays.
    """
    with atomic_write(path, "w", fsync=fsync) as stream:
        json.dump(payload, stream, indent=indent, allow_nan=allow_nan)
    return Path(path)
