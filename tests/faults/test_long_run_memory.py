"""Flat memory over long batch-inference runs: 1,000 driving samples and 1,000 medical
studies through the domains' real readers and writers (tiny stand-in models, see
tests/faults/domain_batches.py). The process RSS after 1,000 outputs may exceed the RSS
after 100 by at most GROWTH_BOUND_MIB (about 18 KB per input). RSS only grows once the
heap's free memory is used up, so after other tests in the same process a small leak can
hide in it for a while; the self-check leaks 64 KB per input (56 MiB over 900), which
no earlier test leaves room for. Each run takes about a CPU minute on the reference
machine."""
from __future__ import annotations

import json

import pytest

from interlace.core.engine.batch_inference import BatchInferenceEngine
from tests.faults import domain_batches as batches

pytestmark = pytest.mark.faults

N, EARLY = 1000, 100
GROWTH_BOUND_MIB = 16.0


def _run(model, reader, writer, inputs, out) -> tuple[batches.RssProbe, object]:
    probe = batches.RssProbe(writer, at=(EARLY, N))
    engine = BatchInferenceEngine(model, reader, probe, str(out), show_progress=False)
    summary = engine.run(inputs)
    return probe, summary


def _report(name, probe, summary, out, fault_report) -> None:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    written = sum(json.loads(line)["status"] == "written" for line in lines)
    growth = probe.rss[N] - probe.rss[EARLY]
    print(f"{name}: RSS {probe.rss[EARLY]:.1f} MiB after {EARLY}, {probe.rss[N]:.1f} MiB after "
          f"{N} outputs (growth {growth:+.1f} MiB), {summary.elapsed_s:.0f} s")
    lost = N - written
    fault_report.record(f"infer: {N} {name} (memory growth {growth:+.1f} MiB)",
                        survived=growth < GROWTH_BOUND_MIB and lost == 0, lost=lost)
    assert (summary.written, summary.failed) == (N, 0)
    assert growth < GROWTH_BOUND_MIB, probe.rss


def test_memory_stays_flat_over_1000_driving_samples(tmp_path, fault_report):
    db = batches.driving_inputs(tmp_path / "nuscenes", N)
    out = tmp_path / "out"
    probe, summary = _run(batches.CentroidDetector(), batches.driving_reader(db),
                          batches.driving_writer(), db["tokens"], out)
    _report("driving samples", probe, summary, out, fault_report)


def test_memory_stays_flat_over_1000_medical_studies(tmp_path, fault_report):
    inputs = batches.medical_inputs(tmp_path / "mimic", N)
    out = tmp_path / "out"
    probe, summary = _run(batches.ThresholdSegmenter(), batches.medical_reader(),
                          batches.medical_writer(), inputs, out)
    _report("medical studies", probe, summary, out, fault_report)


def test_the_probe_sees_a_leak_of_64_kb_per_input(tmp_path):
    """The bound is not vacuous: a writer that keeps 64 KB per input fails it."""
    import numpy as np

    from interlace.core.engine.inference_io import JsonPredictionWriter, TensorFileReader
    from tests.fixtures.toy import FEATURES, ToyRegressor

    kept = []

    class Leaky(JsonPredictionWriter):
        def write(self, outputs, input_path, out_path):
            kept.append(np.ones(64 * 1024, np.uint8))
            super().write(outputs, input_path, out_path)

    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "x.npy", np.zeros(FEATURES, np.float32))
    inputs = []
    for i in range(N):
        (folder / f"x{i:04d}.npy").hardlink_to(folder / "x.npy")
        inputs.append(str(folder / f"x{i:04d}.npy"))
    probe, summary = _run(ToyRegressor(), TensorFileReader(), Leaky(), inputs, tmp_path / "out")
    assert summary.written == N
    assert probe.rss[N] - probe.rss[EARLY] > GROWTH_BOUND_MIB, probe.rss
