"""Batch inference: run a model over many input files, one output file per input.

Every domain plugs in a *reader* (input file → batch for ``model.test_step``) and a
*writer* (model outputs → output file); :class:`BatchInferenceEngine` does the rest:

- shards inputs across ranks by index (``inputs[rank::world_size]``) under torchrun;
- skips inputs whose output already exists, so a killed run resumes where it stopped;
- writes each output to a hidden temporary name in the same directory and renames it
  (:func:`~interlace.core.engine.atomic_files.atomic_path`), so an output under its final
  name is always complete and has the umask's permissions;
- records every input in a JSON-lines manifest (one ``write`` of a whole line on an
  ``O_APPEND`` descriptor, so concurrent writers never interleave) and goes on after a
  failure of one input;
- lets several processes share one output folder (two users, a re-launch while the first
  run is still going): each output is *claimed* with an exclusive claim file first
  (:mod:`~interlace.core.engine.output_claims`), an output claimed by a live process is
  left to it (``claimed`` in the manifest), and claims of dead processes are taken over;
- stops cleanly on SIGTERM / SIGINT (what Slurm and Kubernetes send before killing): the
  input in flight is abandoned (no temporary file, its claim released), recorded as
  ``interrupted``, and ``run`` returns with ``summary.interrupted`` set; a re-run does
  only what is missing;
- stops cleanly when the output folder fails (full disk, read-only, removed mid-run):
  the failed input is recorded with its reason and the summary says why it stopped;
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

import contextlib
import json
import logging
import os
import signal
import threading
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
from .output_claims import ClaimHeld, OutputClaims
from .output_folder import (OutputFolder, OutputFolderError, is_folder_errno,  # noqa: F401
                            remove_temporaries_of)

__all__ = ["InferenceReader", "InferenceWriter", "StreamingInferenceReader",
           "StreamingInferenceWriter", "BatchInferenceEngine", "InferenceSummary",
           "OutputNameConflict", "TensorFileReader", "JsonPredictionWriter", "supports_streaming",
           "OutputFolderError"]


class _Interrupted(BaseException):
    """Raised by the engine's signal handler (a BaseException: never taken for a bad input)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


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
    """Counts for the inputs this rank handled. ``failures`` holds (input, error).

    ``claimed``: inputs left to another live process that holds their claim.
    ``not_run``: inputs never reached because the run stopped early; ``stopped`` says
    why (None after a complete run) and ``interrupted`` is the signal number when a
    signal stopped it.
    """

    written: int = 0
    skipped: int = 0
    failed: int = 0
    claimed: int = 0
    not_run: int = 0
    elapsed_s: float = 0.0
    manifest_path: str = ""
    failures: list[tuple[str, str]] = field(default_factory=list)
    stopped: Optional[str] = None
    interrupted: Optional[int] = None

    @property
    def total(self) -> int:
        return self.written + self.skipped + self.failed + self.claimed

    @classmethod
    def merge(cls, summaries: Sequence["InferenceSummary"]) -> "InferenceSummary":
        """Combine per-rank summaries (elapsed time is the slowest rank's)."""
        merged = cls(manifest_path=summaries[0].manifest_path if summaries else "")
        for s in summaries:
            merged.written += s.written
            merged.skipped += s.skipped
            merged.failed += s.failed
            merged.claimed += s.claimed
            merged.not_run += s.not_run
            merged.stopped = merged.stopped or s.stopped
            merged.interrupted = merged.interrupted or s.interrupted
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
        claim_stale_after_s: a claim file older than this is taken over even if its
            owner may be alive (on another host); None: only dead owners' claims.
        handle_signals: turn SIGTERM / SIGINT into a clean stop during ``run`` (main
            thread only; the previous handlers are restored afterwards).
    """

    def __init__(self, model: torch.nn.Module, reader: Any, writer: Any, out_dir: str,
                 manifest_name: str = "manifest.jsonl", rank: Optional[int] = None,
                 world_size: Optional[int] = None, show_progress: bool = True,
                 streaming: Optional[bool] = None,
                 claim_stale_after_s: Optional[float] = 3600.0,
                 handle_signals: bool = True) -> None:
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
        self.folder = OutputFolder(out_dir, manifest_name)
        self.out_dir, self.manifest_path = self.folder.path, self.folder.manifest_path
        self.show_progress = show_progress and self.rank == 0
        can_stream = supports_streaming(reader, writer)
        if streaming and not can_stream:
            raise TypeError(f"streaming=True needs a reader with iter_windows(path) and a "
                            f"writer with write_stream(...); got {type(reader).__name__} and "
                            f"{type(writer).__name__}")
        self.streaming = can_stream if streaming is None else bool(streaming)
        self.claims = OutputClaims(stale_after_s=claim_stale_after_s)
        self.handle_signals = handle_signals

    # -- public -------------------------------------------------------------------------

    def run(self, inputs: Sequence[str]) -> InferenceSummary:
        """Process this rank's share of `inputs`; return its :class:`InferenceSummary`.

        A failure of one input is recorded and the run goes on; a failing output folder
        (full, read-only, removed) or SIGTERM / SIGINT stops it cleanly (see
        :class:`InferenceSummary` ``stopped``).

        Raises:
            OutputNameConflict: two inputs map to the same output name (checked over all
                inputs, before anything runs, so every rank agrees).
            OutputFolderError: the output folder or its manifest cannot be written.
        """
        inputs = [os.fspath(p) for p in inputs]
        names = self._output_names(inputs)
        mine = list(range(self.rank, len(inputs), self.world_size))
        self.folder.open()
        summary = InferenceSummary(manifest_path=self.manifest_path)
        start = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        done = 0
        try:
            with self._signals_stop_run(), torch.no_grad(), \
                    self._progress(len(mine)) as advance:
                for index in mine:
                    try:
                        record = self._process(inputs[index], names[index])
                    except (_Interrupted, KeyboardInterrupt) as stop:
                        _note_signal(summary, stop)  # the input in flight counts as not run
                        self._record(summary, dict(input=inputs[index], output=None,
                                                   status="interrupted", error=summary.stopped,
                                                   rank=self.rank))
                        break
                    done += 1
                    self._record(summary, record)
                    advance()
                    if summary.stopped is None:
                        summary.stopped = self.folder.problem(record)
                    if summary.stopped:
                        break
        except (_Interrupted, KeyboardInterrupt) as stop:  # between inputs
            _note_signal(summary, stop)
        finally:
            self.claims.release_all()
            self.model.train(was_training)
        summary.not_run = len(mine) - done
        summary.elapsed_s = time.perf_counter() - start
        stopped = f"; {summary.stopped}, {summary.not_run} not run" if summary.stopped else ""
        print_log(f"Batch inference (rank {self.rank}/{self.world_size}): {summary.written} "
                  f"written, {summary.skipped} skipped, {summary.claimed} claimed by another "
                  f"process, {summary.failed} failed in {summary.elapsed_s:.1f} s{stopped}; "
                  f"manifest {self.manifest_path}", logger="current",
                  level=logging.WARNING if summary.stopped else logging.INFO)
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
        """Claim, read, predict and write one input; never raises for a bad input."""
        start = time.perf_counter()
        record: dict[str, Any] = dict(input=path, output=None, status="written", error=None,
                                      rank=self.rank)
        claimed: Optional[str] = None
        try:
            if name is None:
                name = self._output_name(path)  # raises again, with its own message
            out_path = os.path.join(self.out_dir, name)
            record["output"] = out_path
            if os.path.exists(out_path):
                record["status"] = "skipped"
                return record
            os.makedirs(os.path.dirname(out_path), exist_ok=True)
            try:
                taken = self.claims.acquire(out_path)
            except ClaimHeld as held:
                record["status"] = "claimed"
                record["claimed_by"] = held.owner.describe() if held.owner else "unreadable claim"
                return record
            claimed = out_path
            if taken is not None:  # a dead or timed-out run's: its temporaries are garbage
                record["took_over"] = taken.describe() if taken.pid > 0 else "unreadable claim"
                if taken.pid > 0:
                    remove_temporaries_of(out_path, taken.pid)
            if os.path.exists(out_path):  # finished by another process meanwhile
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
            if is_folder_errno(error):
                record["folder_error"] = True
        finally:
            if claimed is not None:
                self.claims.release(claimed)
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

    def _record(self, summary: InferenceSummary, record: dict) -> None:
        """Count `record` in `summary` and append it to the manifest (or the log)."""
        status = record["status"]
        if status in ("written", "skipped", "failed", "claimed"):
            setattr(summary, status, getattr(summary, status) + 1)
        if status == "failed":
            summary.failures.append((record["input"], record["error"]))
        folder_error = record.pop("folder_error", False)
        problem = self.folder.append(record)
        if problem:
            print_log(f"{problem}; record: {json.dumps(record, ensure_ascii=False)}",
                      logger="current", level=logging.ERROR)
            summary.stopped = summary.stopped or problem
        if folder_error and summary.stopped is None:
            summary.stopped = f"output folder {self.out_dir} failed: {record['error']}"

    # -- signals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _signals_stop_run(self):
        """SIGTERM / SIGINT raise :class:`_Interrupted` in the main thread once; later ones
        are ignored while the run cleans up. Previous handlers are restored on exit."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        fired: list[int] = []

        def handler(signum, frame):
            if fired:
                return
            fired.append(signum)
            raise _Interrupted(signum)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _progress(self, total: int):
        """A context yielding ``advance()``; a rich progress bar on rank 0 only."""
        if not self.show_progress:
            return nullcontext(lambda: None)
        return _RichProgress(total, f"inference (rank {self.rank}/{self.world_size})")


def _note_signal(summary: InferenceSummary, stop: BaseException) -> None:
    signum = stop.signum if isinstance(stop, _Interrupted) else signal.SIGINT
    summary.interrupted = int(signum)
    summary.stopped = f"stopped by {signal.Signals(signum).name}"


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
