"""build_runner: the runner's log leaves out mmengine's notices about its own deprecated
API (CheckpointHook builds a FileClient on every run) and keeps every other warning."""
from __future__ import annotations

import logging
import uuid

from mmengine.logging import print_log

from interlace.core.engine.cli import apply_resume, build_runner, load_config
from tests.fixtures.tools import TOY_CONFIG


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_training_log_has_no_file_client_notice_but_other_warnings_pass(tmp_path):
    cfg = load_config(str(TOY_CONFIG), work_dir=str(tmp_path / "work"))
    cfg.experiment_name = f"log_{uuid.uuid4().hex[:8]}"
    cfg.train_cfg.max_epochs = 1
    apply_resume(cfg, None)
    runner = build_runner(cfg)
    records = _Records()
    runner.logger.addHandler(records)
    try:
        runner.train()  # CheckpointHook.before_train builds the FileClient
        print_log("a warning of our own", logger="current", level=logging.WARNING)
    finally:
        runner.logger.removeHandler(records)
    assert not [m for m in records.messages if "FileClient" in m or "HardDiskBackend" in m]
    assert "a warning of our own" in records.messages
