"""write_json_atomic: complete file or none, never a half-written one."""
import json
import math

import pytest

from interlace.core.engine.atomic_files import write_json_atomic


def test_writes_json_and_leaves_no_temporary_file(tmp_path):
    out = write_json_atomic(tmp_path / "sub" / "a.json", {"x": [1, 2]})
    assert json.loads(out.read_text()) == {"x": [1, 2]}
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.json"]


def test_refused_nan_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"bad": math.nan}, allow_nan=False)
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
