"""The fault-injection suite's tally: ``faults: N tried, N survived, N outputs lost or corrupted``.

A fault test (``@pytest.mark.faults``, run by ``make test-faults``) injects one fault, asserts
the outcome and reports it through the ``fault_report`` fixture::

    @pytest.mark.faults
    def test_sigterm_mid_run_leaves_no_temporary_file(tmp_path, fault_report):
        ...                                   # inject the fault, check the outputs
        lost = count_missing_or_corrupt(out)  # outputs that should exist and do not parse
        fault_report.record("infer: SIGTERM mid-run", survived=lost == 0, lost=lost)
        assert lost == 0

``record(name, survived=True, lost=0)`` may be called several times in one test (one call per
fault injected). A test that fails counts its faults as not survived, and a test that fails
before recording anything counts as one fault, named after the test, not survived. When any
fault was tried (or ``-m`` selects ``faults``) the terminal summary ends with the tally line.

``tests/conftest.py`` imports the fixture and calls :func:`summary_line`, so any test under
``tests/`` can use ``fault_report`` without importing this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest

__all__ = ["FaultRecord", "FaultReport", "fault_report", "summary_line", "record_outcome"]


@dataclass
class FaultRecord:
    """One injected fault: which test, what, whether the system survived it, and how many
    outputs it lost or corrupted (0 when nothing that should exist is missing or unreadable)."""

    test: str
    name: str
    survived: bool
    lost: int


# One pytest process runs the suite; the tally lives for that process.
_RECORDS: list[FaultRecord] = []


class FaultReport:
    """The per-test recorder the ``fault_report`` fixture yields."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.records: list[FaultRecord] = []

    def record(self, name: str, survived: bool = True, lost: int = 0) -> None:
        """Count one injected fault `name`; `lost` outputs lost or corrupted by it."""
        if lost < 0:
            raise ValueError(f"lost must be >= 0, got {lost}")
        entry = FaultRecord(self.test, name, bool(survived), int(lost))
        self.records.append(entry)
        _RECORDS.append(entry)


@pytest.fixture
def fault_report(request) -> FaultReport:
    """Recorder for fault tests: ``fault_report.record(name, survived=True, lost=0)``."""
    report = FaultReport(request.node.nodeid)
    request.node._fault_report = report
    yield report


def record_outcome(item, report) -> None:
    """From ``pytest_runtest_makereport``: a failed test did not survive its faults."""
    recorder: Optional[FaultReport] = getattr(item, "_fault_report", None)
    if recorder is None or not report.failed:
        return
    if not recorder.records:
        recorder.record(item.name, survived=False)
    for entry in recorder.records:
        entry.survived = False


def _selects_faults(markexpr: str) -> bool:
    words = markexpr.replace("(", " ").replace(")", " ").split()
    return any(w == "faults" and (i == 0 or words[i - 1] != "not") for i, w in enumerate(words))


def summary_line(config) -> Optional[str]:
    """The tally line, or None when no fault test ran and ``-m`` does not select faults."""
    if not _RECORDS and not _selects_faults(config.getoption("markexpr") or ""):
        return None
    survived = sum(r.survived for r in _RECORDS)
    lost = sum(r.lost for r in _RECORDS)
    return f"faults: {len(_RECORDS)} tried, {survived} survived, {lost} outputs lost or corrupted"
