"""Every config under configs/ loads, and inherits the shared runtime."""
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]
# Pieces that configs inherit (mmdet3d's _base_/{datasets,models,schedules}) and check
# configs (tests/checks) are not runnable configs of their own.
FRAGMENTS = ("configs/_base_/datasets", "configs/_base_/models", "configs/_base_/schedules",
             "configs/checks")
ALL = sorted(p for p in (ROOT / "configs").rglob("*.py") if "__pycache__" not in p.parts)
CONFIGS = [p for p in ALL if not str(p.relative_to(ROOT)).startswith(FRAGMENTS)]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads_with_the_interlace_scope(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == "interlace"


@pytest.mark.parametrize("path", [p for p in ALL if p not in CONFIGS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_config_fragments_load(path):
    Config.fromfile(str(path))


def test_toy_config_inherits_and_overrides_the_runtime():
    cfg = Config.fromfile(str(ROOT / "tests/fixtures/toy_config.py"))
    assert cfg.default_hooks.timer.type == "IterTimerHook"          # inherited
    assert cfg.default_hooks.logger.interval == 2                   # overridden
    assert cfg.env_cfg.dist_cfg.backend == "gloo"
