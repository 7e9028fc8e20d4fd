"""Readers and writers that inject faults into ``tools/infer.py`` runs (registered in
INFERENCE_IO; ``tests/faults/infer_fault_config.py`` loads them).

- :class:`PacedTensorReader`: a ``TensorFileReader`` that can wait for its peers (so two
  processes really overlap) and sleep per input (so a signal lands mid-run);
- :class:`FaultyJsonWriter`: a ``JsonPredictionWriter`` that writes half the file, sleeps,
  then writes the rest (a signal lands while the temporary file exists), and can fail
  on chosen inputs with an ``OSError`` errno (ENOSPC: disk full, EROFS: read-only) or
  remove the output folder before writing.
"""
from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from interlace.core.engine.inference_io import JsonPredictionWriter, TensorFileReader
from interlace.core.engine.registry import INFERENCE_IO


@INFERENCE_IO.register_module()
class PacedTensorReader(TensorFileReader):
    """``rendezvous``: a folder where each process leaves ``ready-<pid>``; the first read
    waits (60 s at most) until `peers` such files exist. ``delay_s``: sleep per read."""

    def __init__(self, delay_s: float = 0.0, rendezvous: Optional[str] = None,
                 peers: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s, self.rendezvous, self.peers = delay_s, rendezvous, peers
        self._met = rendezvous is None

    def read(self, path: str) -> dict:
        if not self._met:
            folder = Path(self.rendezvous)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"ready-{os.getpid()}").touch()
            deadline = time.monotonic() + 60
            while len(list(folder.glob("ready-*"))) < self.peers and time.monotonic() < deadline:
                time.sleep(0.02)
            self._met = True
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().read(path)


@INFERENCE_IO.register_module()
class FaultyJsonWriter(JsonPredictionWriter):
    """``write_delay_s``: sleep between the two halves of every file. ``fail_on``: input
    base names that fail with ``OSError(fail_errno)`` after half the file is written.
    ``remove_folder_on``: input base names before whose write the output folder is
    removed (as a user's ``rm -rf`` mid-run)."""

    def __init__(self, write_delay_s: float = 0.0, fail_on: Sequence[str] = (),
                 fail_errno: str = "ENOSPC", remove_folder_on: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.write_delay_s = write_delay_s
        self.fail_on, self.fail_errno = set(fail_on), getattr(errno, fail_errno)
        self.remove_folder_on = set(remove_folder_on)

    def write(self, outputs: Any, input_path: str, out_path: str) -> None:
        name = os.path.basename(input_path)
        if name in self.remove_folder_on:
            shutil.rmtree(os.path.dirname(out_path), ignore_errors=True)
        text = self._text(outputs, input_path)
        with open(out_path, "w", encoding="utf-8") as stream:
            stream.write(text[: len(text) // 2])
            stream.flush()
            if name in self.fail_on:
                raise OSError(self.fail_errno, os.strerror(self.fail_errno), out_path)
            if self.write_delay_s:
                time.sleep(self.write_delay_s)
            stream.write(text[len(text) // 2:])

    def _text(self, outputs: Any, input_path: str) -> str:
        import json

        from interlace.core.engine.inference_io import to_jsonable
        return json.dumps(dict(input=input_path, predictions=to_jsonable(outputs)))
