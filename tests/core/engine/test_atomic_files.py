"""atomic_files: complete file or none, with the umask's permissions, never a temporary
file left behind."""
import json
import math
import os
import stat

import pytest

from interlace.core.engine.atomic_files import (atomic_path, atomic_write, temporary_sibling,
                                                write_bytes_atomic, write_json_atomic,
                                                write_text_atomic)


@pytest.fixture
def umask():
    """``umask(value)`` sets the process umask for one test; it is restored afterwards."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _writers(tmp_path):
    """One output per helper, as (name, write function)."""
    def with_atomic_path(path):
        with atomic_path(path) as temp:
            temp.write_bytes(b"x")  # a library opening the reserved name itself

    def with_atomic_path_uncreated(path):
        with atomic_path(path, create=False) as temp:
            with open(temp, "wb") as stream:
                stream.write(b"x")

    return [("json", lambda p: write_json_atomic(p, {"a": 1})),
            ("bytes", lambda p: write_bytes_atomic(p, b"x")),
            ("text", lambda p: write_text_atomic(p, "x")),
            ("path", with_atomic_path),
            ("path_uncreated", with_atomic_path_uncreated)]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mask, expected):
    umask(mask)
    for name, write in _writers(tmp_path):
        path = tmp_path / f"{name}.out"
        write(path)
        assert _mode(path) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{name}.out" for name, _ in _writers(tmp_path))


def test_replacing_a_0600_file_gives_the_umask_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "a.json"
    path.write_text("{}")
    os.chmod(path, 0o600)
    write_json_atomic(path, {"new": True})
    assert _mode(path) == 0o644 and json.loads(path.read_text()) == {"new": True}


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


class _Interrupted(BaseException):
    """Stands for KeyboardInterrupt / SystemExit without disturbing pytest."""


@pytest.mark.parametrize("error", [OSError("disk full"), _Interrupted()])
def test_a_failing_writer_leaves_the_target_untouched_and_no_temporary_file(tmp_path, error):
    path = tmp_path / "table.csv"
    path.write_text("old\n")
    with pytest.raises(type(error)):
        with atomic_write(path, "w") as stream:
            stream.write("half a ta")
            raise error
    assert path.read_text() == "old\n"
    with pytest.raises(type(error)):
        with atomic_path(path) as temp:
            temp.write_text("half")
            raise error
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_a_failing_first_write_creates_no_target(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "map.tif"):
            raise RuntimeError("GDAL failed")
    assert list(tmp_path.iterdir()) == []


def test_writer_that_creates_nothing_is_an_error_naming_the_target(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"map\.tif"):
        with atomic_path(tmp_path / "map.tif", create=False):
            pass
    assert list(tmp_path.iterdir()) == []


def test_temporary_name_is_hidden_unique_in_the_folder_and_keeps_every_extension(tmp_path):
    with temporary_sibling(tmp_path / "scan.nii.gz") as first, \
            temporary_sibling(tmp_path / "scan.nii.gz") as second:
        assert first != second and first.exists() and second.exists()
        for temp in (first, second):
            assert temp.parent == tmp_path and temp.name.startswith(".scan.tmp-")
            assert temp.name.endswith(".nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_binary_and_text_round_trip_and_parent_folders_are_made(tmp_path):
    write_bytes_atomic(tmp_path / "a" / "b.bin", b"\x00\xff")
    write_text_atomic(tmp_path / "a" / "c.txt", "é\n")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\xff"
    assert (tmp_path / "a" / "c.txt").read_text(encoding="utf-8") == "é\n"


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    assert list(tmp_path.iterdir()) == []
