"""tools/analysis_tools/merge_submission.py: per-sample driving predictions -> one submission
JSON (and the token list that tools/infer.py takes)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from interlace.core.engine.cli import run_cli
from interlace.domains.driving.data.info_files import make_metainfo, save_info_file
from interlace.domains.driving.evaluation.submission import load_submission, sample_detections
from interlace.tools import merge_submission
from tests.fixtures.tools import run_tool

TOKENS = ["a" * 32, "b" * 32]


def _info_file(path):
    """A two-sample v1.x info file with only the keys the merge reads."""
    ego2global = np.eye(4)
    ego2global[:3, 3] = [100.0, 200.0, 0.0]
    data_list = [dict(sample_idx=i, token=token, timestamp=i, ego2global=ego2global,
                      lidar_points=dict(lidar_path=f"{token}.bin", lidar2ego=np.eye(4)),
                      images={}) for i, token in enumerate(TOKENS)]
    return save_info_file(path, make_metainfo("v1.0-mini"), data_list)


def _sample_files(folder, tokens=TOKENS, use_camera=True):
    """What NuScenesSubmissionWriter writes: one car 10 m ahead per sample."""
    folder.mkdir(parents=True, exist_ok=True)
    ego2global = np.eye(4)
    ego2global[:3, 3] = [100.0, 200.0, 0.0]
    for token in tokens:
        results = sample_detections(token, [[10, 0, 0, 4, 2, 1.5, 0, 0, 0]], [0.8], [0],
                                    np.eye(4), ego2global)
        meta = dict(use_camera=use_camera, use_lidar=True, use_radar=False, use_map=False,
                    use_external=False)
        (folder / f"{token}.json").write_text(json.dumps(
            dict(sample_token=token, meta=meta, results=results)))
    (folder / "manifest.jsonl").write_text("{}\n")  # the engine's manifest is ignored


def _cli(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: merge_submission.main([str(a) for a in args]))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_merges_every_sample_into_a_valid_submission(tmp_path, capsys):
    info = _info_file(tmp_path / "infos_val.pkl")
    _sample_files(tmp_path / "preds")
    code, out, _ = _cli([tmp_path / "preds", "--info", info, "--out", tmp_path / "sub.json"],
                        capsys)
    assert code == 0
    assert "merged 2 samples, 2 boxes" in out and "use_camera=True" in out
    submission = load_submission(tmp_path / "sub.json")
    assert sorted(submission["results"]) == TOKENS
    [box] = submission["results"][TOKENS[0]]
    # 10 m ahead in the LiDAR frame, ego at (100, 200) in the global frame
    assert box["translation"] == pytest.approx([110.0, 200.0, 0.0], abs=1e-4)
    assert submission["meta"]["use_camera"] is True and submission["meta"]["use_lidar"] is True


def test_meta_option_overrides_the_files_flags(tmp_path, capsys):
    info = _info_file(tmp_path / "infos_val.pkl")
    _sample_files(tmp_path / "preds")
    code, out, _ = _cli([tmp_path / "preds", "--info", info, "--out", tmp_path / "sub.json",
                         "--meta", "use_camera=False", "use_lidar=true"], capsys)
    assert code == 0 and "use_camera" not in out
    meta = load_submission(tmp_path / "sub.json")["meta"]
    assert meta["use_camera"] is False and meta["use_lidar"] is True


def test_unfinished_run_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    info = _info_file(tmp_path / "infos_val.pkl")
    _sample_files(tmp_path / "preds", tokens=TOKENS[:1])
    code, _, err = _cli([tmp_path / "preds", "--info", info, "--out", tmp_path / "sub.json"],
                        capsys)
    assert code == 2 and "Traceback" not in err
    assert "1 of the 2 samples" in err and "run tools/infer.py again" in err
    assert not (tmp_path / "sub.json").exists()


@pytest.mark.parametrize("meta, message", [(["use_camera=maybe"], "expected KEY=True"),
                                           (["use_sonar=True"], "unknown keys ['use_sonar']")])
def test_bad_meta_is_refused_naming_the_problem(tmp_path, capsys, meta, message):
    info = _info_file(tmp_path / "infos_val.pkl")
    _sample_files(tmp_path / "preds")
    code, _, err = _cli([tmp_path / "preds", "--info", info, "--out", tmp_path / "sub.json",
                         "--meta", *meta], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "sub.json").exists()


def test_missing_prediction_folder_is_named(tmp_path, capsys):
    info = _info_file(tmp_path / "infos_val.pkl")
    code, _, err = _cli([tmp_path / "nope", "--info", info, "--out", tmp_path / "s.json"],
                        capsys)
    assert code == 2 and "prediction folder not found" in err and "nope" in err


def test_tokens_from_writes_the_list_that_infer_reads(tmp_path, capsys):
    info = _info_file(tmp_path / "infos_val.pkl")
    code, out, _ = _cli(["--tokens-from", info, "--out", tmp_path / "tokens.txt"], capsys)
    assert code == 0 and "wrote 2 sample tokens" in out
    assert (tmp_path / "tokens.txt").read_text().split() == TOKENS


def test_needs_a_folder_and_info_unless_writing_tokens(capsys):
    with pytest.raises(SystemExit) as info:
        merge_submission.parse_args(["--out", "x.json"])
    assert info.value.code == 2
    assert "PRED_DIR and --info are needed" in capsys.readouterr().err


def test_help_from_the_command_line_shows_the_examples():
    proc = run_tool("tools/analysis_tools/merge_submission.py", "--help", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--tokens-from" in proc.stdout
    assert "python tools/analysis_tools/merge_submission.py work_dirs/preds" in proc.stdout
