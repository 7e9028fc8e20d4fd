"""interlace.demo.driving: the `make demo` driving step (generate, infos, train,
infer, submission, DetectionEval, picture)."""
from __future__ import annotations

import json

import pytest
from mmengine.config import Config
from PIL import Image

from interlace.domains.driving.evaluation.submission import load_submission


@pytest.fixture(scope="module")
def step():
    from interlace.demo import driving
    return driving


@pytest.mark.parametrize("name", ["deepinteraction_r18_synthetic_tiny",
                                  "transfusion_l_synthetic_tiny"])
def test_training_config_points_every_data_root_at_the_generated_set(step, tmp_path, name):
    cfg = step.training_config(name, tmp_path / "train", tmp_path / "data", epochs=3)
    train = cfg.train_dataloader.dataset.dataset
    assert train.data_root == str(tmp_path / "data")
    pasted = [t for t in train.pipeline if t["type"] == "ObjectSample"]
    assert all(t["db_sampler"]["data_root"] == str(tmp_path / "data") for t in pasted)
    assert bool(pasted) == name.startswith("transfusion")  # GT paste: LiDAR-only stage
    assert cfg.train_cfg.max_epochs == 3 and cfg.param_scheduler[0]["end"] == 3
    assert cfg.default_hooks.checkpoint.interval == 3
    assert cfg.val_dataloader is None and cfg.work_dir == str(tmp_path / "train")
    assert "infer_cfg" in Config.fromfile(str(step.CONFIGS / f"{name}.py"))  # step 4 infers with it


@pytest.mark.slow
@pytest.mark.parametrize("lidar_only", [False, True], ids=["fusion", "lidar-only"])
def test_demo_step_runs_end_to_end_at_a_tiny_size(step, tmp_path, lidar_only):
    result = step.run(tmp_path, scenes=2, samples_per_scene=2, epochs=1, lidar_only=lidar_only,
                      quiet=True)
    scores, outputs = result["scores"], result["outputs"]
    assert 0.0 <= scores["mAP"] <= 1.0 and 0.0 <= scores["NDS"] <= 1.0
    assert ("mAP no camera" in scores) is not lidar_only
    submission = load_submission(outputs["submission"])
    tokens = (tmp_path / "val_tokens.txt").read_text().split()
    assert sorted(submission["results"]) == sorted(tokens) and len(tokens) == 2
    assert submission["meta"]["use_camera"] is not lidar_only
    if not lidar_only:
        dropped = load_submission(tmp_path / "results_nusc_drop_camera.json")
        assert dropped["meta"]["use_camera"] is False
    assert (tmp_path / "eval" / "metrics_summary.json").is_file()
    with Image.open(outputs["visualization"]) as image:
        assert image.width > 800 and image.height > 200
    assert json.loads((tmp_path / "scores.json").read_text())["scores"] == scores
    assert result["detector"] == ("transfusion_l_synthetic_tiny" if lidar_only
                                  else "deepinteraction_r18_synthetic_tiny")
