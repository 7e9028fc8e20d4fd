"""BatchInferenceEngine streaming: a reader with ``iter_windows`` and a writer with
``write_stream`` run the model window by window; manifest, resume and atomic-write
semantics are the same as for ``read``/``write``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel

from interlace.core.engine.batch_inference import (BatchInferenceEngine,
                                                   StreamingInferenceReader,
                                                   StreamingInferenceWriter, supports_streaming)

ROWS_PER_WINDOW = 2


class RowWindowReader(StreamingInferenceReader):
    """A ``.npy`` (H, W) array as windows of ROWS_PER_WINDOW rows; records what it read."""

    def __init__(self, fail_at_window: int | None = None) -> None:
        self.fail_at_window = fail_at_window
        self.read_calls = 0
        self.windows_read = 0
        self.closed = 0

    def read(self, path: str) -> dict:
        self.read_calls += 1
        return dict(inputs=torch.from_numpy(np.load(path))[None])

    def describe(self, path: str) -> dict:
        height, width = np.load(path, mmap_mode="r").shape
        return dict(height=height, width=width)

    def iter_windows(self, path: str):
        array = np.load(path, mmap_mode="r")
        try:
            for row in range(0, array.shape[0], ROWS_PER_WINDOW):
                if self.fail_at_window is not None and row // ROWS_PER_WINDOW == self.fail_at_window:
                    raise ValueError(f"{path}: unreadable block at row {row} (injected)")
                self.windows_read += 1
                yield row, dict(inputs=torch.from_numpy(np.array(array[row:row + ROWS_PER_WINDOW]))[None])
        finally:
            self.closed += 1


class DoubleModel(BaseModel):
    """test_step -> [2 x input]; records the batch shapes and the grad / train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.seen: list[tuple] = []

    def forward(self, inputs, data_samples=None, mode="tensor"):
        self.seen.append((tuple(inputs.shape), self.training, torch.is_grad_enabled()))
        return [inputs[0] * self.scale]


class RowStackWriter(StreamingInferenceWriter):
    """Stacks the windows' outputs into ``<stem>.npy``, writing each window as it comes
    (into a preallocated memmap), so a failure mid-stream leaves a partial file behind
    for the engine to remove."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.scenes: list[dict] = []

    def output_name(self, path: str) -> str:
        return Path(path).stem + ".npy"

    def write(self, outputs, input_path: str, out_path: str) -> None:
        np.save(out_path, outputs[0].numpy())

    def write_stream(self, stream, scene: dict, input_path: str, out_path: str) -> None:
        self.scenes.append(scene)
        out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32,
                                        shape=(scene["height"], scene["width"]))
        for count, (row, outputs) in enumerate(stream, 1):
            out[row:row + ROWS_PER_WINDOW] = outputs[0].numpy()
            out.flush()
            if self.stop_after is not None and count == self.stop_after:
                break
        del out


@pytest.fixture
def arrays(tmp_path) -> list[str]:
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(3):
        path = folder / f"a{i}.npy"
        np.save(path, np.arange(6 * 5, dtype=np.float32).reshape(6, 5) + 100 * i)
        paths.append(str(path))
    return paths


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_streaming_runs_the_model_per_window_and_writes_the_whole_input(arrays, tmp_path):
    reader, writer, model = RowWindowReader(), RowStackWriter(), DoubleModel().train()
    out = tmp_path / "out"
    summary = BatchInferenceEngine(model, reader, writer, str(out), show_progress=False).run(arrays)

    assert (summary.written, summary.failed) == (3, 0)
    assert reader.read_calls == 0, "the streamed path must not load the input whole"
    # Every window went through the model alone, in eval mode and without grad.
    assert model.seen == [((1, ROWS_PER_WINDOW, 5), False, False)] * 9 and model.training
    for path in arrays:
        np.testing.assert_array_equal(np.load(out / Path(path).name), 2 * np.load(path))
    assert writer.scenes == [dict(height=6, width=5)] * 3
    assert [r["windows"] for r in _manifest(out)] == [3, 3, 3]
    assert reader.closed == 3


def test_failure_mid_stream_leaves_no_output_and_is_recorded(arrays, tmp_path):
    out = tmp_path / "out"
    reader = RowWindowReader(fail_at_window=2)   # windows 0 and 1 are written first
    summary = BatchInferenceEngine(DoubleModel(), reader, RowStackWriter(), str(out),
                                   show_progress=False).run(arrays[:2])

    assert (summary.written, summary.failed) == (0, 2)
    assert reader.windows_read == 4              # it did get half-way through each input
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]
    record = _manifest(out)[0]
    assert record["status"] == "failed" and record["output"] == str(out / "a0.npy")
    assert record["error"].startswith("ValueError:") and "row 4 (injected)" in record["error"]

    # A re-run with a healthy reader retries the failed inputs (nothing to skip).
    again = BatchInferenceEngine(DoubleModel(), RowWindowReader(), RowStackWriter(), str(out),
                                 show_progress=False).run(arrays[:2])
    assert (again.written, again.skipped) == (2, 0)
    resumed = BatchInferenceEngine(DoubleModel(), RowWindowReader(), RowStackWriter(), str(out),
                                   show_progress=False).run(arrays)
    assert (resumed.written, resumed.skipped) == (1, 2)


def test_model_failure_mid_stream_is_recorded_and_the_next_input_still_runs(arrays, tmp_path):
    class FailsOnSecondInput(DoubleModel):
        def forward(self, inputs, data_samples=None, mode="tensor"):
            if inputs.min() >= 100 and inputs.min() < 200 and inputs.max() > 120:
                raise RuntimeError("out of memory (injected)")
            return super().forward(inputs, data_samples, mode)

    out = tmp_path / "out"
    summary = BatchInferenceEngine(FailsOnSecondInput(), RowWindowReader(), RowStackWriter(),
                                   str(out), show_progress=False).run(arrays)
    assert (summary.written, summary.failed) == (2, 1)
    assert summary.failures == [(arrays[1], "RuntimeError: out of memory (injected)")]
    assert not (out / "a1.npy").exists() and _leftovers(out) == []


def test_writer_that_stops_early_produces_no_output(arrays, tmp_path):
    out = tmp_path / "out"
    summary = BatchInferenceEngine(DoubleModel(), RowWindowReader(), RowStackWriter(stop_after=2),
                                   str(out), show_progress=False).run(arrays[:1])
    assert summary.failed == 1 and "before the stream ended" in summary.failures[0][1]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]


def test_readers_without_windows_keep_the_read_write_path(arrays, tmp_path):
    class PlainReader(RowWindowReader):
        iter_windows = None  # type: ignore[assignment]

    reader = PlainReader()
    assert not supports_streaming(reader, RowStackWriter())
    engine = BatchInferenceEngine(DoubleModel(), reader, RowStackWriter(), str(tmp_path / "out"),
                                  show_progress=False)
    assert engine.run(arrays[:1]).written == 1 and reader.read_calls == 1
    assert "windows" not in _manifest(tmp_path / "out")[0]
    forced = BatchInferenceEngine(DoubleModel(), RowWindowReader(), RowStackWriter(),
                                  str(tmp_path / "out2"), show_progress=False, streaming=False)
    assert forced.run(arrays[:1]).written == 1 and forced.reader.read_calls == 1
    with pytest.raises(TypeError, match="iter_windows"):
        BatchInferenceEngine(DoubleModel(), reader, RowStackWriter(), str(tmp_path / "o"),
                             streaming=True)
