"""BatchInferenceEngine: failures recorded and skipped over, resume, atomic writes,
sharding across ranks; the generic TensorFileReader / JsonPredictionWriter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from interlace.core.engine.batch_inference import (BatchInferenceEngine, JsonPredictionWriter,
                                                   OutputNameConflict, TensorFileReader)
from interlace.core.engine.registry import INFERENCE_IO
from tests.fixtures.toy import FEATURES, ToyRegressor


@pytest.fixture
def inputs(tmp_path) -> list[str]:
    """Five .npy vectors of FEATURES floats; s2.npy is garbage bytes."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = folder / f"s{i}.npy"
        np.save(path, rng.standard_normal(FEATURES).astype(np.float32))
        paths.append(str(path))
    Path(paths[2]).write_bytes(b"\x00garbage, not an npy file\xff" * 4)
    return paths


def _engine(out_dir, writer=None, model=None, **kwargs) -> BatchInferenceEngine:
    return BatchInferenceEngine(model or ToyRegressor(), TensorFileReader(),
                                writer or JsonPredictionWriter(), str(out_dir), **kwargs)


def _manifest(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "manifest.jsonl").read_text().splitlines()]


def test_corrupt_input_is_recorded_as_failed_and_the_others_are_written(inputs, tmp_path):
    out = tmp_path / "out"
    model = ToyRegressor()
    summary = _engine(out, model=model).run(inputs)

    assert (summary.written, summary.skipped, summary.failed) == (4, 0, 1)
    assert sorted(p.name for p in out.glob("*.json")) == ["s0.json", "s1.json", "s3.json", "s4.json"]
    records = _manifest(out)
    assert [r["input"] for r in records] == inputs
    bad = records[2]
    assert bad["status"] == "failed" and inputs[2] in bad["error"]
    assert bad["error"].startswith("ValueError:") and "cannot read as .npy" in bad["error"]
    assert all(r["status"] == "written" and r["error"] is None for i, r in enumerate(records) if i != 2)
    assert {"input", "output", "status", "error", "rank", "seconds"} <= set(bad)
    # The written prediction is the model's output for that file.
    written = json.loads((out / "s0.json").read_text())
    x = torch.from_numpy(np.load(inputs[0]))
    with torch.no_grad():
        expected = model.linear(x).item()
    assert written["input"] == inputs[0]
    assert written["predictions"][0]["pred"] == pytest.approx(expected, rel=1e-6)


def test_second_run_skips_written_outputs_and_retries_only_the_failed(inputs, tmp_path):
    out = tmp_path / "out"
    _engine(out).run(inputs)
    again = _engine(out).run(inputs)
    assert (again.written, again.skipped, again.failed) == (0, 4, 1)
    second = _manifest(out)[5:]
    assert [r["status"] for r in second] == ["skipped", "skipped", "failed", "skipped", "skipped"]

    np.save(inputs[2], np.ones(FEATURES, np.float32))  # repaired: the retry now succeeds
    third = _engine(out).run(inputs)
    assert (third.written, third.skipped, third.failed) == (1, 4, 0)
    assert (out / "s2.json").is_file() and len(_manifest(out)) == 15


class _FailingWriter(JsonPredictionWriter):
    """Writes half a file, then fails, for one chosen input."""

    def __init__(self, fail_on: str) -> None:
        super().__init__()
        self.fail_on = fail_on

    def write(self, outputs, input_path, out_path) -> None:
        if Path(input_path).name != self.fail_on:
            return super().write(outputs, input_path, out_path)
        with open(out_path, "w") as f:
            f.write('{"input": "half a fi')
        raise OSError("disk full (simulated)")


def test_writer_failure_leaves_no_final_and_no_temporary_file(inputs, tmp_path):
    out = tmp_path / "out"
    summary = _engine(out, writer=_FailingWriter("s3.npy")).run(inputs)
    assert summary.failed == 2 and not (out / "s3.json").exists()
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name] == []
    assert (out / "s4.json").is_file()  # went on after the failure
    record = _manifest(out)[3]
    assert record["status"] == "failed" and record["error"] == "OSError: disk full (simulated)"


def test_sharding_over_two_ranks_covers_every_input_exactly_once(inputs, tmp_path):
    out = tmp_path / "out"
    first = _engine(out, rank=0, world_size=2, show_progress=False).run(inputs)
    second = _engine(out, rank=1, world_size=2, show_progress=False).run(inputs)
    assert first.total == 3 and second.total == 2
    records = _manifest(out)
    assert sorted(r["input"] for r in records) == sorted(inputs)
    assert {r["input"]: r["rank"] for r in records} == {p: i % 2 for i, p in enumerate(inputs)}


def test_model_runs_in_eval_mode_without_grad_and_its_mode_is_restored(inputs, tmp_path):
    seen = []

    class Recording(ToyRegressor):
        def forward(self, *args, **kwargs):
            seen.append((self.training, torch.is_grad_enabled()))
            return super().forward(*args, **kwargs)

    model = Recording().train()
    _engine(tmp_path / "out", model=model).run(inputs[:2])
    assert seen == [(False, False), (False, False)] and model.training


def test_two_inputs_with_the_same_output_name_are_rejected_before_running(inputs, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = other / "s0.npy"
    np.save(twin, np.zeros(FEATURES, np.float32))
    with pytest.raises(OutputNameConflict, match="s0.json"):
        _engine(tmp_path / "out").run([inputs[0], str(twin)])
    assert not (tmp_path / "out" / "s0.json").exists()


def test_tensor_file_reader_reads_pt_and_names_bad_files(tmp_path):
    reader = INFERENCE_IO.build(dict(type="TensorFileReader", dtype="float64"))
    path = tmp_path / "x.pt"
    torch.save(torch.arange(4.0), path)
    batch = reader.read(str(path))
    assert batch["inputs"][0].dtype == torch.float64
    assert batch["data_samples"][0].metainfo["filename"] == "x.pt"
    with pytest.raises(ValueError, match=r"x\.txt.*not '\.txt'"):
        reader.read(str(tmp_path / "x.txt"))
    torch.save({"not": "a tensor"}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match=r"d\.pt: expected a tensor, found a dict"):
        reader.read(str(tmp_path / "d.pt"))


def test_json_writer_converts_tensors_and_numpy(tmp_path):
    writer = INFERENCE_IO.build(dict(type="JsonPredictionWriter"))
    out = tmp_path / "o.json"
    writer.write([dict(box=torch.tensor([1.5, 2.0]), score=np.float32(0.25),
                       mask=np.array([[1, 0]]))], "in.npy", str(out))
    assert json.loads(out.read_text())["predictions"] == [
        dict(box=[1.5, 2.0], score=0.25, mask=[[1, 0]])]
