"""A small synthetic Sentinel-1/2 set shared by the data tests (written once per session)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from interlace.domains.remote_sensing.data.synthetic import TRUTH_JSON, make_synthetic_s1s2

SIZE, DATES = 64, 4


@pytest.fixture(scope="session")
def s1s2_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("s1s2")
    make_synthetic_s1s2(root, tiles=3, size=SIZE, dates=DATES, seed=0)
    return root


@pytest.fixture(scope="session")
def truth(s1s2_root) -> dict:
    return json.loads((s1s2_root / TRUTH_JSON).read_text())


@pytest.fixture
def s1s2_copy(s1s2_root, tmp_path) -> Path:
    """A private copy to break files in."""
    return Path(shutil.copytree(s1s2_root, tmp_path / "data"))
