"""The reader / writer protocol of batch inference, and the generic readers and writers.

A *reader* turns one input file into a batch for ``model.test_step``; a *writer* turns
the model's outputs into one output file. :class:`~.batch_inference.BatchInferenceEngine`
drives them (sharding, resuming, atomic outputs, the manifest). Domains subclass these and
register them in ``INFERENCE_IO``.
"""
from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch
from mmengine.structures import BaseDataElement

from .registry import INFERENCE_IO

__all__ = ["InferenceReader", "InferenceWriter", "StreamingInferenceReader",
           "StreamingInferenceWriter", "OutputNameConflict", "supports_streaming",
           "TensorFileReader", "JsonPredictionWriter", "to_jsonable"]


class OutputNameConflict(ValueError):
    """Two inputs would be written to the same output file."""


class InferenceReader(ABC):
    """Turns one input file into a batch for ``model.test_step(data)``.

    ``read(path)`` returns what the model's data preprocessor expects, usually
    ``dict(inputs=[...], data_samples=[...])`` holding one sample. It raises (with the
    file named in the message) on unreadable input; the engine records the error in
    the manifest and goes on.
    """

    @abstractmethod
    def read(self, path: str) -> dict:
        """Load `path` as a batch of one sample."""


class InferenceWriter(ABC):
    """Names and writes the output for one input.

    ``output_name(path)`` is the output's path relative to the output directory (it may
    contain sub-directories; two inputs must not share one). ``write(outputs,
    input_path, out_path)`` writes the model's ``test_step`` outputs to exactly
    `out_path`: the engine passes a temporary name that keeps the final name's
    extensions and renames it afterwards, so a writer never handles atomicity itself.
    """

    @abstractmethod
    def output_name(self, path: str) -> str:
        """The output file name for input `path`, relative to the output directory."""

    @abstractmethod
    def write(self, outputs: Any, input_path: str, out_path: str) -> None:
        """Write `outputs` (from ``model.test_step``) for `input_path` to `out_path`."""


class StreamingInferenceReader(InferenceReader):
    """A reader that can also hand out one input as a sequence of windows.

    ``describe(path)`` returns what a writer needs to lay the windows out before the
    first one arrives, as a plain dict (e.g. ``height``, ``width``, ``crs``,
    ``transform``, ``nodata`` for a raster scene); the engine passes it through
    untouched. ``iter_windows(path)`` yields ``(window, batch)``: `window` says where
    the batch sits in the input (opaque to the engine, understood by the matching
    writer) and `batch` is what ``model.test_step`` takes, as from ``read``. Windows
    must come in the order the writer expects (typically row-major).
    """

    @abstractmethod
    def describe(self, path: str) -> dict:
        """Geometry and metadata of `path` that the writer needs (a plain dict)."""

    @abstractmethod
    def iter_windows(self, path: str) -> Iterator[tuple[Any, dict]]:
        """Yield ``(window, batch)`` pairs covering `path`."""


class StreamingInferenceWriter(InferenceWriter):
    """A writer that can assemble one output from per-window model outputs.

    ``write_stream(stream, scene, input_path, out_path)`` must consume `stream` (an
    iterator of ``(window, outputs)``, `outputs` being ``model.test_step``'s result for
    that window) to its end and write exactly `out_path`. `scene` is the reader's
    ``describe(input_path)``. Exceptions raised by the model or reader surface from the
    stream's ``next``; the writer should let them propagate (after cleaning up anything
    it opened), and the engine then removes `out_path` and records the failure.
    """

    @abstractmethod
    def write_stream(self, stream: Iterable[tuple[Any, Any]], scene: dict, input_path: str,
                     out_path: str) -> None:
        """Write the output for `input_path` from its windows' outputs to `out_path`."""


def supports_streaming(reader: Any, writer: Any) -> bool:
    """Whether `reader` and `writer` speak the streaming protocol (duck-typed)."""
    return (callable(getattr(reader, "iter_windows", None))
            and callable(getattr(writer, "write_stream", None)))


# --- generic readers and writers -------------------------------------------------------

@INFERENCE_IO.register_module()
class TensorFileReader(InferenceReader):
    """Reads a ``.npy`` array or a ``.pt`` tensor (``weights_only=True``) as one sample.

    Returns ``dict(inputs=[tensor], data_samples=[BaseDataElement])``; the tensor keeps
    the file's shape (e.g. ``(F,)`` or ``(C, H, W)``) and dtype unless `dtype` is given,
    and the data sample's metainfo holds ``filename`` (base name), ``file_path`` and
    ``shape``.
    """

    SUFFIXES = (".npy", ".pt", ".pth")

    def __init__(self, dtype: Optional[str] = None) -> None:
        self.dtype = getattr(torch, dtype) if dtype else None
        if dtype and not isinstance(self.dtype, torch.dtype):
            raise ValueError(f"TensorFileReader: dtype {dtype!r} is not a torch dtype name")

    def read(self, path: str) -> dict:
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in self.SUFFIXES:
            raise ValueError(f"{path}: TensorFileReader reads {', '.join(self.SUFFIXES)} "
                             f"files, not '{suffix or '(no extension)'}'")
        try:
            if suffix == ".npy":
                # allow_pickle=False: an .npy holding objects could run code.
                tensor = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                tensor = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such input file") from None
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "(no message)"
            if not isinstance(error, ValueError):  # the type says what went wrong
                reason = f"{type(error).__name__}: {reason}"
            raise ValueError(f"{path}: cannot read as {suffix}: {reason}") from None
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor, found a {type(tensor).__name__}")
        if self.dtype is not None:
            tensor = tensor.to(self.dtype)
        sample = BaseDataElement(metainfo=dict(filename=os.path.basename(path),
                                               file_path=path, shape=tuple(tensor.shape)))
        return dict(inputs=[tensor], data_samples=[sample])


def to_jsonable(value: Any) -> Any:
    """Tensors, numpy arrays/scalars, data elements and containers as JSON values."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, BaseDataElement):
        return to_jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


@INFERENCE_IO.register_module()
class JsonPredictionWriter(InferenceWriter):
    """Writes ``{"input": PATH, "predictions": [...]}`` to ``<input stem><suffix>``.

    `predictions` is the model's ``test_step`` output (a list, one entry per sample)
    with tensors and numpy values turned into (nested) lists.
    """

    def __init__(self, suffix: str = ".json", indent: Optional[int] = None) -> None:
        self.suffix, self.indent = suffix, indent

    def output_name(self, path: str) -> str:
        return os.path.splitext(os.path.basename(path))[0] + self.suffix

    def write(self, outputs: Any, input_path: str, out_path: str) -> None:
        text = json.dumps(dict(input=input_path, predictions=to_jsonable(outputs)),
                          indent=self.indent)
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(text)
