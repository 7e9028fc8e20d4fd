"""Test-suite settings: deterministic seeds, few threads (CI has 2 cores)."""
import os

import pytest
import torch

from interlace.warning_filters import filterwarnings_lines
from tests.faults_plugin import fault_report, record_outcome, summary_line  # noqa: F401  (fixture)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One intra-op thread by default: the tests are many small ops, for which a second thread
# costs more in synchronisation than it gains, and on a loaded 2-core runner oversubscribed
# threads made single steps 10-100x slower. Tools started as subprocesses (benchmarks,
# torchrun) set their own. INTERLACE_TEST_THREADS overrides.
TEST_THREADS = int(os.environ.get("INTERLACE_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)


def pytest_configure(config):
    """Known third-party warnings are filtered by message (interlace.warning_filters, the
    list the demo uses too); any other warning shows in the summary."""
    for line in filterwarnings_lines():
        config.addinivalue_line("filterwarnings", line)


@pytest.fixture(autouse=True)
def _test_threads():
    """Every test starts at TEST_THREADS, whatever an earlier in-process test set (spconv's
    CPU gather / scatter with 2 OpenMP threads can be orders of magnitude slower on a busy
    runner)."""
    torch.set_num_threads(TEST_THREADS)
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """`make test`'s short summary: what ran, where the reports are, what was left out."""
    stats = terminalreporter.stats
    counts = {k: len(stats.get(k, [])) for k in ("passed", "failed", "error", "skipped")}
    deselected = len(stats.get("deselected", []))
    marker = config.getoption("markexpr") or "all"
    lines = [f"ran: {sum(counts.values())} tests (marker filter: {marker}); "
             f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
             f"{counts['skipped']} skipped; {deselected} deselected (run them with "
             "`make test-slow`, `make test-dist` or `make test-faults`)"]
    junit = config.getoption("xmlpath", None)
    if junit:
        lines.append(f"report: {junit}")
    faults = summary_line(config)  # `make test-faults`: the fault-injection tally
    if faults:
        lines.append(faults)
    terminalreporter.write_sep("-", "Interlace test summary")
    for line in lines:
        terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed fault test counts its faults as not survived (tests/faults_plugin.py)."""
    outcome = yield
    record_outcome(item, outcome.get_result())
