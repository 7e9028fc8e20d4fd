"""tools/infer.py on the driving detectors: one submission-format JSON per sample token,
resumed per sample, with --drop camera and --drop-views 2, merged into a submission that
nuscenes-devkit's DetectionEval scores."""
from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from interlace.core.engine.registry import MODELS, register_all_modules
from interlace.domains.driving.evaluation.inference_io import (merge_sample_predictions,
                                                               write_sample_tokens)
from interlace.domains.driving.evaluation.nuscenes_metric import (run_detection_eval,
                                                                   summary_to_metrics)
from tests.domains.driving.test_inference_io import make_tiny_database
from interlace.tools import infer as infer_tool
from tests.fixtures.tools import ROOT, run_tool

FUSION_INFER = ROOT / "configs" / "driving" / "deepinteraction_r18_synthetic_tiny.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny database, its val token list and a randomly initialised checkpoint of the
    tiny DeepInteraction config."""
    register_all_modules()
    init_default_scope("interlace")
    tmp = tmp_path_factory.mktemp("infer_driving")
    db = make_tiny_database(tmp / "db")
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(FUSION_INFER)).model)
    torch.save({"state_dict": model.state_dict()}, tmp / "random.pth")
    tokens = write_sample_tokens(db["info_file"], tmp / "tokens.txt")
    return dict(db, tmp=tmp, checkpoint=tmp / "random.pth", tokens=tokens)


def infer(run, out, *extra: str) -> int:
    return infer_tool.main([str(FUSION_INFER), str(run["checkpoint"]), f"@{run['tokens']}",
                            "--out", str(out), "--no-progress", "--device", "cpu",
                            "--cfg-options", f"infer_cfg.reader.data_root={run['root']}",
                            *extra])


def manifest(out) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def sample_boxes(out, token: str) -> list[dict]:
    return json.loads((out / f"{token}.json").read_text())["results"]


@pytest.fixture(scope="module")
def full(run):
    """Predictions with every input (written once for the module)."""
    out = run["tmp"] / "full"
    assert infer(run, out) == 0
    return out


def test_writes_one_submission_file_per_sample_and_resumes_per_sample(run, full):
    for token in run["tokens"].read_text().split():
        payload = json.loads((full / f"{token}.json").read_text())
        assert payload["sample_token"] == token and payload["meta"]["use_camera"] is True
        boxes = payload["results"]
        assert 0 < len(boxes) <= 20  # the tiny head keeps at most its 20 queries
        assert all(b["sample_token"] == token and len(b["rotation"]) == 4 for b in boxes)
        scores = [b["detection_score"] for b in boxes]
        assert scores == sorted(scores, reverse=True)
    # A killed run: one sample's file is missing; the rerun writes only that one.
    first = run["tokens"].read_text().split()[0]
    before = (full / f"{first}.json").read_text()
    (full / f"{first}.json").unlink()
    assert infer(run, full) == 0
    rerun = manifest(full)[-2:]
    assert sorted(r["status"] for r in rerun) == ["skipped", "written"]
    assert [r["input"] for r in rerun if r["status"] == "written"] == [first]
    assert (full / f"{first}.json").read_text() == before  # same weights, same boxes


def test_merged_submission_is_scored_by_detection_eval(run, full):
    from nuscenes import NuScenes

    merged = merge_sample_predictions(full, run["info_file"], run["tmp"] / "results_nusc.json")
    assert merged["samples"] == len(run["tokens"].read_text().split())
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version="v1.0-mini", dataroot=str(run["root"]), verbose=False)
    summary, _ = run_detection_eval(nusc, merged["path"], "mini_val", str(run["tmp"] / "eval"))
    metrics = summary_to_metrics(summary)
    assert 0.0 <= metrics["mAP"] <= 1.0 and math.isfinite(metrics["NDS"])
    assert (run["tmp"] / "eval" / "metrics_summary.json").is_file()


@pytest.mark.parametrize("flag", [["--drop", "camera"], ["--drop-views", "2"]],
                         ids=["drop-camera", "drop-views-2"])
def test_dropping_inputs_changes_the_boxes(run, full, flag):
    out = run["tmp"] / f"dropped_{flag[-1]}"
    assert infer(run, out, *flag) == 0
    tokens = run["tokens"].read_text().split()
    assert all(r["status"] == "written" for r in manifest(out))
    changed = [t for t in tokens if sample_boxes(out, t) != sample_boxes(full, t)]
    assert changed, f"{' '.join(flag)} left every sample's boxes as they were"


def test_unknown_tokens_fail_alone_and_all_failed_exits_nonzero(run, tmp_path):
    good = run["tokens"].read_text().split()[0]
    listed = tmp_path / "tokens.txt"
    listed.write_text(f"{good}\n{'f' * 32}\n")
    out = tmp_path / "out"
    code = infer_tool.main([str(FUSION_INFER), str(run["checkpoint"]), f"@{listed}", "--out",
                            str(out), "--no-progress", "--device", "cpu", "--cfg-options",
                            f"infer_cfg.reader.data_root={run['root']}"])
    assert code == 0
    records = {r["input"]: r for r in manifest(out)}
    assert records[good]["status"] == "written"
    assert records["f" * 32]["status"] == "failed" and "not in" in records["f" * 32]["error"]
    listed.write_text(f"{'f' * 32}\n")
    assert infer_tool.main([str(FUSION_INFER), str(run["checkpoint"]), f"@{listed}", "--out",
                            str(tmp_path / "none"), "--no-progress", "--device", "cpu",
                            "--cfg-options", f"infer_cfg.reader.data_root={run['root']}"]) == 1


@pytest.mark.slow
def test_command_line_run(run, tmp_path):
    done = run_tool("tools/infer.py", FUSION_INFER, run["checkpoint"], f"@{run['tokens']}",
                    "--out", tmp_path / "cli", "--no-progress", "--drop", "camera",
                    "--cfg-options", f"infer_cfg.reader.data_root={run['root']}", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "written: 2" in done.stdout and "dropped modalities: camera" in done.stdout
    assert len(list((tmp_path / "cli").glob("*.json"))) == 2
