"""tools/create_data.py: help with examples, one-line errors, and the info files it writes."""
from __future__ import annotations

import pytest

from interlace.core.engine.cli import ToolError, run_cli
from interlace.tools import create_data
from tests.fixtures.tools import run_tool


def test_help_lists_the_nuscenes_command_and_examples():
    proc = run_tool("tools/create_data.py", "--help")
    assert proc.returncode == 0
    assert "nuscenes" in proc.stdout and "--version v1.0-mini" in proc.stdout


def test_a_missing_root_is_one_line_naming_the_path(tmp_path, capsys):
    missing = tmp_path / "no_such_nuscenes"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: create_data.main(["nuscenes", "--root", str(missing), "--version",
                                          "v1.0-mini", "--out", str(tmp_path / "out")]))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_root_without_tables_names_the_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: create_data.main(["nuscenes", "--root", str(tmp_path), "--version",
                                          "v1.0-trainval", "--no-progress"]))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(tmp_path / "v1.0-trainval") in error


def test_writes_train_and_val_infos_and_reports_counts(tmp_path, capsys):
    from interlace.domains.driving.data.info_files import load_info_file
    from interlace.domains.driving.data.synthetic import make_synthetic_nuscenes

    make_synthetic_nuscenes(tmp_path / "db", scenes=2, samples_per_scene=2, version="v1.0-mini",
                            verbose=False)
    code = create_data.main(["nuscenes", "--root", str(tmp_path / "db"), "--version",
                             "v1.0-mini", "--out", str(tmp_path / "out"), "--max-sweeps", "3",
                             "--extra-tag", "mini", "--skip-gt-database", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "train: 2 samples from 1 scenes" in out and "val: 2 samples from 1 scenes" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "mini_infos_train.pkl", "mini_infos_val.pkl"]
    metainfo, data_list = load_info_file(tmp_path / "out" / "mini_infos_train.pkl", "v1.0-mini")
    assert len(data_list) == 2 and max(len(i["lidar_sweeps"]) for i in data_list) == 3


def test_a_negative_sweep_count_is_refused():
    with pytest.raises(ToolError, match="--max-sweeps"):
        create_data.main(["nuscenes", "--root", ".", "--max-sweeps", "-1"])
