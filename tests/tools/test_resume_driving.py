"""Driving must-show: the tiny DeepInteraction run, killed in the middle of an epoch,
resumes with `tools/train.py --resume` to the weights of an uninterrupted run (same seed).

Slow (three short trainings of the fusion config on a generated 2-scene database): run it
with `make test-slow` or `pytest -m slow tests/tools/test_resume_driving.py`.
"""
import pytest
import torch

from interlace.demo.driving import training_config
from tests.domains.driving.test_inference_io import make_tiny_database
from tests.fixtures.tools import run_tool

pytestmark = pytest.mark.slow
KILLED_EXIT = 17  # tests.fixtures.toy.KillAfterIterHook


def _config(tmp_path, root, kill_at=None) -> str:
    cfg = training_config("deepinteraction_r18_synthetic_tiny", tmp_path, root, 1)
    assert cfg.train_cfg.type == "ResumableEpochBasedTrainLoop"
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=3, by_epoch=False)
    cfg.custom_imports = dict(imports=["tests.fixtures.toy"], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type="KillAfterIterHook", iteration=kill_at)] if kill_at else []
    cfg.randomness = dict(seed=0)
    path = tmp_path / f"tiny_kill{kill_at}.py"
    cfg.dump(str(path))
    return str(path)


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_killed_fusion_run_resumes_to_the_uninterrupted_weights(tmp_path):
    db = make_tiny_database(tmp_path / "db")
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    proc = run_tool("tools/train.py", _config(tmp_path, db["root"]), "--work-dir", full_dir,
                    timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = sorted(full_dir.glob("iter_*.pth"), key=lambda p: int(p.stem[5:]))[-1]
    total = int(last.stem[5:])
    assert total >= 6, f"need at least 6 iterations in the epoch, got {total}"
    proc = run_tool("tools/train.py", _config(tmp_path, db["root"], kill_at=5), "--work-dir",
                    cut_dir, timeout=900)
    assert proc.returncode == KILLED_EXIT, proc.stderr[-3000:]
    assert (cut_dir / "iter_3.pth").is_file() and not (cut_dir / "iter_6.pth").exists()
    proc = run_tool("tools/train.py", _config(tmp_path, db["root"]), "--work-dir", cut_dir,
                    "--resume", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    full, resumed = _weights(last), _weights(cut_dir / last.name)
    worst = max(float((resumed[k].float() - v.float()).abs().max()) for k, v in full.items()
                if v.is_floating_point())
    print(f"{len(full)} tensors after {total} iterations; largest difference {worst:.3g}")
    assert worst < 1e-5
