"""Batch inference: run a model over many input files, one output file per input.

Every domain plugs in a *reader* (input file → batch for ``model.test_step``) and a
*writer* (model outputs → output file); :class:`BatchInferenceEngine` does the rest:

- shards inputs across ranks by index (``inputs[rank::world_size]``) under torchrun;
- skips inputs whose output already exists, so a killed run resumes where it stopped;
- writes each output to a hidden temporary name in the same directory and renames it
  (:func:`~interlace.core.engine.atomic_files.atomic_path`), so an output under its final
  name is always complete and has the umask's permissions;
- records every input in a JSON-lines manifest and goes on after a failure;
- shows a progress bar with an ETA on rank 0 (plain, once, when stderr is not a TTY).

An input too large for one forward pass (a satellite scene, a whole-slide image) is
*streamed*: when the reader has ``iter_windows(path)`` and the writer has
``write_stream(...)`` (see :class:`StreamingInferenceReader` /
:class:`StreamingInferenceWriter`), the model runs window by window and the writer
consumes ``(window, outputs)`` pairs as they come, so memory follows the window size,
not the input size. The output, manifest, temporary name and failure handling are the
same as for ``read``/``write``: a failure mid-stream leaves no output behind.

Readers and writers are registered in ``INFERENCE_IO``; a config names them in
``infer_cfg = dict(reader=dict(type=...), writer=dict(type=...))`` (see ``tools/infer.py``).
"""
from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log

from .atomic_files import atomic_path
from .inference_io import (InferenceReader, InferenceWriter,  # noqa: F401  (re-exported)
                           JsonPredictionWriter, OutputNameConflict, StreamingInferenceReader,
                           StreamingInferenceWriter, TensorFileReader, supports_streaming,
                           to_jsonable)

__all__ = ["InferenceReader", "InferenceWriter", "StreamingInferenceReader",
           "StreamingInferenceWriter", "BatchInferenceEngine", "InferenceSummary",
           "OutputNameConflict", "TensorFileReader", "JsonPredictionWriter", "supports_streaming"]


class _WindowStream:
    """Iterator of ``(window, model.test_step(batch))`` over a reader's windows.

    Counts the windows and remembers whether it ran to the end, so the engine can refuse
    an output from a writer that stopped early (it would be silently incomplete).
    """

    def __init__(self, model: Any, windows: Iterator[tuple[Any, dict]]) -> None:
        self._model, self._windows = model, iter(windows)
        self.count, self.exhausted = 0, False

    def __iter__(self) -> "_WindowStream":
        return self

    def __next__(self) -> tuple[Any, Any]:
        try:
            window, batch = next(self._windows)
        except StopIteration:
            self.exhausted = True
            raise
        self.count += 1
        return window, self._model.test_step(batch)

    def close(self) -> None:
        """Close the reader's generator (releases its open files early)."""
        close = getattr(self._windows, "close", None)
        if callable(close):
            close()


@dataclass
class InferenceSummary:
    """Counts for the inputs this rank handled. ``failures`` holds (input, error)."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    manifest_path: str = ""
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.written + self.skipped + self.failed

    @classmethod
    def merge(cls, summaries: Sequence["InferenceSummary"]) -> "InferenceSummary":
        """Combine per-rank summaries (elapsed time is the slowest rank's)."""
        merged = cls(manifest_path=summaries[0].manifest_path if summaries else "")
        for s in summaries:
            merged.written += s.written
            merged.skipped += s.skipped
            merged.failed += s.failed
            merged.elapsed_s = max(merged.elapsed_s, s.elapsed_s)
            merged.failures.extend(s.failures)
        return merged


class BatchInferenceEngine:
    """Run `model` over input files with a reader and a writer (see module docstring).

    Args:
        model: an mmengine ``BaseModel`` (anything with ``test_step(data)``), already
            on its device with weights loaded. It runs in eval mode under ``no_grad``.
        reader: an :class:`InferenceReader` (or anything with ``read``), optionally a
            :class:`StreamingInferenceReader`.
        writer: an :class:`InferenceWriter` (or anything with ``output_name``/``write``),
            optionally a :class:`StreamingInferenceWriter`.
        out_dir: where outputs and the manifest go (created if missing).
        manifest_name: the JSON-lines manifest's file name inside `out_dir`.
        rank, world_size: this process's shard; default from ``mmengine.dist``.
        show_progress: show a progress bar (only ever on rank 0).
        streaming: None (default) streams windows whenever reader and writer both
            support it; False always uses ``read``/``write``; True requires streaming.
    """

    def __init__(self, model: torch.nn.Module, reader: Any, writer: Any, out_dir: str,
                 manifest_name: str = "manifest.jsonl", rank: Optional[int] = None,
                 world_size: Optional[int] = None, show_progress: bool = True,
                 streaming: Optional[bool] = None) -> None:
        for obj, role, methods in ((reader, "reader", ("read",)),
                                   (writer, "writer", ("output_name", "write"))):
            lacking = [m for m in methods if not callable(getattr(obj, m, None))]
            if lacking:
                raise TypeError(f"The {role} {type(obj).__name__} has no method "
                                f"{', '.join(lacking)}; see Inference{role.title()}.")
        if not callable(getattr(model, "test_step", None)):
            raise TypeError(f"The model {type(model).__name__} has no test_step(data); "
                            "batch inference needs an mmengine BaseModel.")
        dist_rank, dist_world = get_dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        self.model, self.reader, self.writer = model, reader, writer
        self.out_dir = os.path.abspath(out_dir)
        self.manifest_path = os.path.join(self.out_dir, manifest_name)
        self.show_progress = show_progress and self.rank == 0
        can_stream = supports_streaming(reader, writer)
        if streaming and not can_stream:
            raise TypeError(f"streaming=True needs a reader with iter_windows(path) and a "
                            f"writer with write_stream(...); got {type(reader).__name__} and "
                            f"{type(writer).__name__}")
        self.streaming = can_stream if streaming is None else bool(streaming)

    # -- public -------------------------------------------------------------------------

    def run(self, inputs: Sequence[str]) -> InferenceSummary:
        """Process this rank's share of `inputs`; return its :class:`InferenceSummary`.

        Raises:
            OutputNameConflict: two inputs map to the same output name (checked over all
                inputs, before anything runs, so every rank agrees).
        """
        inputs = [os.fspath(p) for p in inputs]
        names = self._output_names(inputs)
        mine = list(range(self.rank, len(inputs), self.world_size))
        os.makedirs(self.out_dir, exist_ok=True)
        summary = InferenceSummary(manifest_path=self.manifest_path)
        start = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._progress(len(mine)) as advance:
                for index in mine:
                    record = self._process(inputs[index], names[index])
                    self._append_manifest(record)
                    setattr(summary, record["status"], getattr(summary, record["status"]) + 1)
                    if record["status"] == "failed":
                        summary.failures.append((record["input"], record["error"]))
                    advance()
        finally:
            self.model.train(was_training)
        summary.elapsed_s = time.perf_counter() - start
        print_log(f"Batch inference (rank {self.rank}/{self.world_size}): {summary.written} "
                  f"written, {summary.skipped} skipped, {summary.failed} failed in "
                  f"{summary.elapsed_s:.1f} s; manifest {self.manifest_path}", logger="current")
        return summary

    # -- steps --------------------------------------------------------------------------

    def _output_name(self, path: str) -> str:
        """The writer's output name for `path`, checked to stay inside ``out_dir``."""
        name = os.path.normpath(self.writer.output_name(path))
        if os.path.isabs(name) or name == os.curdir or name.split(os.sep)[0] == os.pardir:
            raise ValueError(f"{type(self.writer).__name__}.output_name({path!r}) gave "
                             f"{name!r}, which is not a file name inside the output directory")
        return name

    def _output_names(self, inputs: Sequence[str]) -> list[Optional[str]]:
        """Each input's output name; None where ``output_name`` raised (that input is
        then recorded as failed when its rank reaches it)."""
        names: list[Optional[str]] = []
        seen: dict[str, str] = {}
        for path in inputs:
            try:
                name = self._output_name(path)
            except Exception:
                names.append(None)
                continue
            if name in seen:
                raise OutputNameConflict(f"Inputs {seen[name]} and {path} would both be written to "
                                 f"{os.path.join(self.out_dir, name)}; give the inputs "
                                 "distinct names or use a writer that keeps their folders.")
            seen[name] = path
            names.append(name)
        return names

    def _process(self, path: str, name: Optional[str]) -> dict:
        """Read, predict and write one input; never raises for a bad input."""
        start = time.perf_counter()
        record: dict[str, Any] = dict(input=path, output=None, status="written", error=None,
                                      rank=self.rank)
        try:
            if name is None:
                name = self._output_name(path)  # raises again, with its own message
            out_path = os.path.join(self.out_dir, name)
            record["output"] = out_path
            if os.path.exists(out_path):
                record["status"] = "skipped"
            else:
                outputs = None if self.streaming else self.model.test_step(self.reader.read(path))
                # The writer creates the temporary file (create=False), so a writer that
                # writes nothing is caught; any failure, Ctrl-C too, removes it.
                with atomic_path(out_path, create=False) as tmp:
                    if self.streaming:  # read, predict and write interleaved, window by window
                        record["windows"] = self._write_streamed(path, str(tmp))
                    else:
                        self.writer.write(outputs, path, str(tmp))
                    if not tmp.exists():
                        method = "write_stream" if self.streaming else "write"
                        raise RuntimeError(f"{type(self.writer).__name__}.{method} did not "
                                           f"create the file it was given ({tmp})")
        except Exception as error:  # one bad input must not stop the batch
            record["status"] = "failed"
            record["error"] = f"{type(error).__name__}: {error}"[:2000]
        record["seconds"] = round(time.perf_counter() - start, 4)
        return record

    def _write_streamed(self, path: str, tmp: str) -> int:
        """Run the model window by window into ``writer.write_stream``; return the number
        of windows. Raises if the reader yields nothing or the writer stops early."""
        scene = self.reader.describe(path) if callable(getattr(self.reader, "describe", None)) else {}
        stream = _WindowStream(self.model, self.reader.iter_windows(path))
        try:
            self.writer.write_stream(stream, dict(scene), path, tmp)
        finally:
            stream.close()
        if stream.count == 0:
            raise ValueError(f"{path}: {type(self.reader).__name__}.iter_windows yielded no window")
        if not stream.exhausted:
            raise RuntimeError(f"{type(self.writer).__name__}.write_stream returned after "
                               f"{stream.count} window(s), before the stream ended; the output "
                               "would be incomplete")
        return stream.count

    def _append_manifest(self, record: dict) -> None:
        """Append one JSON line with a single ``write`` on an ``O_APPEND`` descriptor,
        so lines from ranks sharing the manifest never interleave."""
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.manifest_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _progress(self, total: int):
        """A context yielding ``advance()``; a rich progress bar on rank 0 only."""
        if not self.show_progress:
            return nullcontext(lambda: None)
        return _RichProgress(total, f"inference (rank {self.rank}/{self.world_size})")


class _RichProgress:
    """rich progress bar on stderr with count, elapsed time and ETA. On a non-terminal
    (CI, pytest) rich draws nothing live and prints the final state once."""

    def __init__(self, total: int, description: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(),
                                  console=Console(stderr=True))
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self):
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()
