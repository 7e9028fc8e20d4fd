"""tools/train.py and tools/test.py behave like their mmdet3d counterparts."""
import json
import pickle

import pytest
import torch

from tests.fixtures.tools import TOY_CONFIG, run_tool


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("train")
    proc = run_tool("tools/train.py", TOY_CONFIG, "--work-dir", work_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work_dir


def test_train_writes_a_checkpoint_per_epoch_and_the_loss_falls(trained):
    assert (trained / "epoch_1.pth").is_file() and (trained / "epoch_2.pth").is_file()
    logs = sorted(trained.glob("*/vis_data/scalars.json"))
    losses = [json.loads(line)["loss"] for line in logs[-1].read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) >= 2 and losses[-1] < losses[0]


def test_resume_from_a_checkpoint_continues_to_the_next_epoch(trained, tmp_path):
    proc = run_tool("tools/train.py", TOY_CONFIG, "--work-dir", tmp_path,
                    "--resume", trained / "epoch_1.pth",
                    "--cfg-options", "train_cfg.max_epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "epoch_2.pth").is_file() and not (tmp_path / "epoch_1.pth").exists()
    ckpt = torch.load(tmp_path / "epoch_2.pth", weights_only=False)
    assert ckpt["meta"]["epoch"] == 2


def test_resume_without_a_path_picks_the_latest_checkpoint_in_the_work_dir(trained):
    proc = run_tool("tools/train.py", TOY_CONFIG, "--work-dir", trained, "--resume",
                    "--cfg-options", "train_cfg.max_epochs=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (trained / "epoch_3.pth").is_file()
    ckpt = torch.load(trained / "epoch_3.pth", weights_only=False)
    assert ckpt["meta"]["epoch"] == 3


def test_cfg_options_override_the_config(tmp_path):
    proc = run_tool("tools/train.py", TOY_CONFIG, "--work-dir", tmp_path,
                    "--cfg-options", "train_cfg.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "epoch_1.pth").is_file() and not (tmp_path / "epoch_2.pth").exists()


def test_amp_on_a_cpu_machine_is_reported_and_training_goes_on(tmp_path):
    proc = run_tool("tools/train.py", TOY_CONFIG, "--work-dir", tmp_path, "--amp",
                    "--cfg-options", "train_cfg.max_epochs=1")
    if torch.cuda.is_available():
        pytest.skip("the fallback is for CPU-only machines")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--amp ignored" in proc.stdout + proc.stderr


def test_unknown_model_type_names_type_scope_and_close_names(tmp_path):
    proc = run_tool("tools/train.py", TOY_CONFIG, "--work-dir", tmp_path,
                    "--cfg-options", "model.type=ToyRegresor")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "ToyRegresor" in proc.stderr and "interlace::model" in proc.stderr
    assert "Did you mean: ToyRegressor" in proc.stderr


def test_missing_config_is_a_one_line_error():
    proc = run_tool("tools/train.py", "configs/does_not_exist.py")
    assert proc.returncode == 2 and "config file not found: configs/does_not_exist.py" in proc.stderr


@pytest.mark.parametrize("tool", ["tools/train.py", "tools/test.py"])
def test_help_shows_examples_and_mmdet3d_flags(tool):
    proc = run_tool(tool, "--help")
    assert proc.returncode == 0
    for flag in ("--work-dir", "--cfg-options", "--launcher", "Examples:"):
        assert flag in proc.stdout
    extra = ("--resume", "--amp") if tool.endswith("train.py") else ("--out", "--format-only", "--show-dir")
    for flag in extra:
        assert flag in proc.stdout


def test_test_tool_evaluates_and_dumps_predictions(trained, tmp_path):
    out = tmp_path / "preds.pkl"
    proc = run_tool("tools/test.py", TOY_CONFIG, trained / "epoch_2.pth",
                    "--work-dir", tmp_path, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mse=" in proc.stdout
    with open(out, "rb") as f:
        predictions = pickle.load(f)
    assert len(predictions) == 16 and {"index", "pred", "y"} <= set(predictions[0])


def test_format_only_writes_results_without_scores(trained, tmp_path):
    prefix = f"{tmp_path}/submission/"
    proc = run_tool("tools/test.py", TOY_CONFIG, trained / "epoch_2.pth", "--work-dir",
                    tmp_path, "--format-only", "--cfg-options",
                    f"test_evaluator.outfile_prefix={prefix}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(json.loads((tmp_path / "submission" / "predictions.json").read_text())) == 16
    assert "mse=" not in proc.stdout


def test_show_dir_turns_on_the_visualization_hook(trained, tmp_path):
    proc = run_tool("tools/test.py", TOY_CONFIG, trained / "epoch_2.pth",
                    "--work-dir", tmp_path, "--show-dir", tmp_path / "vis")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "vis").glob("sample_*.txt"))) == 16


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    proc = run_tool("tools/test.py", TOY_CONFIG, tmp_path / "nope.pth")
    assert proc.returncode == 2
    assert "checkpoint not found" in proc.stderr and "Traceback" not in proc.stderr


def test_checkpoint_that_is_not_a_state_dict_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pth"
    torch.save([1, 2, 3], bad)
    proc = run_tool("tools/test.py", TOY_CONFIG, bad, "--work-dir", tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr
