"""Claim files: several processes share one output folder without writing an output twice.

Before a process computes an output it creates a *claim* next to it,
``dir/.NAME.claim``, with ``O_CREAT | O_EXCL`` (atomic: exactly one process creates it,
also on NFS v3 and later). The claim holds one JSON object, ``{"pid", "host", "time",
"token"}``, and is removed when the output is written or given up, so a process that
finds a claim knows someone else is working on that output and moves on.

A claim is *stale*, and is taken over, when its owner cannot be working on it any more:

- the owner ran on this host and its pid no longer exists (killed with SIGKILL, OOM);
- or the claim is older than `stale_after_s` (the owner ran elsewhere, or hung). Pick a
  value well above the time one output takes.

Taking over is serialised by a second exclusive file, ``.NAME.claim.takeover``: of
several processes that find the same stale claim, the one that creates it re-reads the
claim, checks it is still the stale one (same token) and replaces it; the others move on.
A takeover file left by a killed process is itself stale by the same rules.
An unreadable claim (a process killed between creating and filling it) is judged by the
file's age alone.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Optional

__all__ = ["Claim", "ClaimHeld", "OutputClaims", "claim_path", "pid_alive"]

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
CLAIM_SUFFIX = ".claim"


def claim_path(out_path: str) -> str:
    """The claim file of output `out_path`: ``dir/.NAME.claim`` (hidden, same folder)."""
    directory, name = os.path.split(out_path)
    return os.path.join(directory, f".{name}{CLAIM_SUFFIX}")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (``kill(pid, 0)``; EPERM means it exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Claim:
    """A claim file's content; `age_s` is measured when it was read."""

    pid: int
    host: str
    time: float
    token: str
    age_s: float = 0.0

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, {self.age_s:.0f} s ago"


class ClaimHeld(Exception):
    """The output is claimed by another live process (``owner`` holds its claim)."""

    def __init__(self, out_path: str, owner: Optional[Claim]) -> None:
        self.out_path, self.owner = out_path, owner
        who = owner.describe() if owner else "an unreadable claim"
        super().__init__(f"{out_path} is being written by {who}")


class OutputClaims:
    """Create, check and release claim files for one process.

    Args:
        stale_after_s: a claim older than this is taken over whatever its owner
            (default one hour); None: only claims of dead pids on this host are stale.
        host: this machine's name (default ``socket.gethostname()``).
    """

    def __init__(self, stale_after_s: Optional[float] = 3600.0,
                 host: Optional[str] = None) -> None:
        if stale_after_s is not None and stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be > 0 or None, got {stale_after_s}")
        self.stale_after_s = stale_after_s
        self.host = host or socket.gethostname()
        self.held: dict[str, str] = {}  # claim path -> our token

    # -- public -------------------------------------------------------------------------

    def acquire(self, out_path: str) -> Optional[Claim]:
        """Claim `out_path`; return the stale claim taken over (``pid`` -1 when it was
        unreadable), or None when there was none.

        Raises:
            ClaimHeld: another live process holds the claim.
            OSError: the claim cannot be created (e.g. the folder is read-only or full).
        """
        path = claim_path(out_path)
        for _ in range(3):  # the claim may be released or replaced while we look at it
            if self._create(path):
                return None
            stale = self._stale_claim(path)
            if stale is False:
                raise ClaimHeld(out_path, self.read(path))
            if stale is None and not os.path.exists(path):
                continue  # released in the meantime
            if self._take_over(path, stale):
                return stale if isinstance(stale, Claim) else Claim(-1, "?", 0.0, "")
        raise ClaimHeld(out_path, self.read(path))

    def release(self, out_path: str) -> None:
        """Remove our claim on `out_path` (a claim taken over by another process is left)."""
        path = claim_path(out_path)
        token = self.held.pop(path, None)
        if token is None:
            return
        current = self.read(path)
        if current is None or current.token == token:
            self._remove(path)

    def release_all(self) -> None:
        """Remove every claim this object still holds (on exit)."""
        for path in list(self.held):
            token = self.held.pop(path)
            current = self.read(path)
            if current is None or current.token == token:
                self._remove(path)

    def read(self, path: str) -> Optional[Claim]:
        """The claim in file `path`, or None if it is missing or unreadable."""
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
            age = time.time() - float(data["time"])
            return Claim(int(data["pid"]), str(data["host"]), float(data["time"]),
                         str(data["token"]), age)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- steps --------------------------------------------------------------------------

    def _create(self, path: str) -> bool:
        """Create claim file `path` exclusively with our identity; False if it exists."""
        try:
            fd = os.open(path, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            return False
        token = secrets.token_hex(8)
        payload = json.dumps(dict(pid=os.getpid(), host=self.host, time=time.time(),
                                  token=token)).encode("utf-8")
        try:
            os.write(fd, payload)
        except BaseException:
            os.close(fd)
            self._remove(path)
            raise
        os.close(fd)
        self.held[path] = token
        return True

    def _take_over(self, path: str, stale) -> bool:
        """Replace the stale claim at `path` (`stale`: its content, None if unreadable)
        under the takeover lock; False if another process got there first."""
        lock = path + ".takeover"
        if not self._create(lock):
            if self._stale_claim(lock) is not False:
                self._remove(lock)  # left by a process killed mid-takeover; retry
            return False
        try:
            current = self.read(path)
            if current is None:
                same = stale is None or not os.path.exists(path)
            else:
                same = isinstance(stale, Claim) and current.token == stale.token
            if not same:
                return False
            self._remove(path)
            return self._create(path)
        finally:
            self.held.pop(lock, None)
            self._remove(lock)

    def _is_stale(self, claim: Claim) -> bool:
        """Owner dead on this host (its pid gone, or our own pid from an earlier process,
        as after a container restart), or the claim older than `stale_after_s`."""
        if claim.host == self.host:
            if claim.pid == os.getpid():
                if claim.token not in self.held.values():
                    return True
            elif not pid_alive(claim.pid):
                return True
        return self.stale_after_s is not None and claim.age_s > self.stale_after_s

    def _stale_claim(self, path: str):
        """The stale claim at `path`; None if stale but unreadable; False if live."""
        claim = self.read(path)
        if claim is not None:
            return claim if self._is_stale(claim) else False
        try:  # unreadable: half-written by a killed process, or just removed
            age = time.time() - os.stat(path).st_mtime
        except FileNotFoundError:
            return None
        grace = 60.0 if self.stale_after_s is None else min(60.0, self.stale_after_s)
        return None if age > grace else False

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as error:  # a vanished or read-only folder: nothing more to do
            if error.errno not in (errno.ENOENT, errno.EROFS, errno.EACCES, errno.EPERM):
                raise
