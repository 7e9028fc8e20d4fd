"""tools/infer.py: end to end in a subprocess, plus its input expansion and error paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from interlace.core.engine.cli import ToolError, run_cli
from tests.fixtures.tools import run_tool
from tests.fixtures.toy import FEATURES, ToyRegressor

CONFIG = "tests/fixtures/toy_config.py"


def _run(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    return run_tool("tools/infer.py", *args, timeout=timeout)


@pytest.fixture(autouse=True)
def _restore_local_rank(monkeypatch):
    """The tool sets LOCAL_RANK when it is missing; keep that out of other tests."""
    monkeypatch.setenv("LOCAL_RANK", os.environ.get("LOCAL_RANK", "0"))


@pytest.fixture(scope="module")
def infer_tool():
    from interlace.tools import infer
    return infer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "toy.pth"
    torch.save({"meta": {"epoch": 2}, "state_dict": ToyRegressor().state_dict()}, path)
    return path


@pytest.fixture
def in_dir(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"v{i}.npy", np.full(FEATURES, i, np.float32))
    (folder / "broken.npy").write_bytes(b"not an array")
    (folder / ".hidden.npy").write_bytes(b"skipped: hidden")
    return folder


def test_infer_writes_outputs_and_prints_summary(checkpoint, in_dir, tmp_path):
    out = tmp_path / "out"
    proc = _run(CONFIG, checkpoint, in_dir, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.json")) == ["v0.json", "v1.json", "v2.json"]
    assert "inputs: 4  written: 3  skipped: 0  failed: 1" in proc.stdout
    assert f"manifest: {out / 'manifest.jsonl'}" in proc.stdout
    assert "broken.npy" in proc.stdout.split("failed inputs:")[1]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 4 and ".hidden.npy" not in str(records)


def test_unknown_model_type_exits_2_with_a_suggestion(checkpoint, in_dir, tmp_path):
    proc = _run(CONFIG, checkpoint, in_dir, "--out", tmp_path / "out",
                "--cfg-options", "model.type=ToyRegresor")
    assert proc.returncode == 2
    assert "'ToyRegresor'" in proc.stderr and "Did you mean: ToyRegressor" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_help_shows_an_example():
    proc = _run("--help")
    assert proc.returncode == 0
    assert "Examples:" in proc.stdout and "python tools/infer.py" in proc.stdout
    assert "--out DIR" in proc.stdout and "@list.txt" in proc.stdout


def test_missing_checkpoint_is_a_one_line_error(infer_tool, in_dir, tmp_path, capsys):
    missing = tmp_path / "epoch_9.pth"
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: infer_tool.main([CONFIG, str(missing), str(in_dir), "--out",
                                         str(tmp_path / "out")]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: checkpoint not found: {missing}"


def test_state_dict_mismatch_is_a_one_line_error(infer_tool, in_dir, tmp_path, capsys):
    wrong = tmp_path / "wrong.pth"
    torch.save({"linear.weight": torch.zeros(1, FEATURES + 1)}, wrong)
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: infer_tool.main([CONFIG, str(wrong), str(in_dir), "--out",
                                         str(tmp_path / "out")]))
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err
    assert "wrong.pth" in err and "shape-mismatched" in err and "missing 1" in err


def test_exit_code_is_1_when_every_input_failed(infer_tool, checkpoint, in_dir, tmp_path, capsys):
    code = infer_tool.main([CONFIG, str(checkpoint), str(in_dir / "broken.npy"),
                            "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert "failed: 1" in capsys.readouterr().out


def test_inputs_expand_from_dirs_globs_and_list_files(infer_tool, in_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("list.txt").write_text("# chosen\nin/v2.npy\n\nin/v0.npy\n")
    expanded = infer_tool.expand_inputs(["@list.txt", "in/v*.npy", "in"])
    assert expanded == ["in/v2.npy", "in/v0.npy", "in/v1.npy", "in/broken.npy"]
    with pytest.raises(ToolError, match="matched no files: in/\\*.tif"):
        infer_tool.expand_inputs(["in/*.tif"])
    with pytest.raises(ToolError, match="input not found: nope.npy"):
        infer_tool.expand_inputs(["nope.npy"])


SEGMENT_CONFIG = "configs/remote_sensing/skysense_segment_synthetic_tiny.py"


def test_remote_sensing_config_writes_one_cog_per_tile_and_resumes(infer_tool, tmp_path, capsys):
    """The segment config's infer_cfg: a folder of tile rasters -> one COG per tile with
    the tile's CRS, transform, nodata and colour table; a second run skips them."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from interlace.core.engine.registry import MODELS
    from interlace.domains.remote_sensing.data import make_synthetic_s1s2

    make_synthetic_s1s2(tmp_path / "data", tiles=2, size=32, dates=2, seed=0)
    init_default_scope("interlace")
    checkpoint = tmp_path / "segmentor.pth"
    torch.save({"state_dict": MODELS.build(Config.fromfile(SEGMENT_CONFIG).model).state_dict()},
               checkpoint)
    args = [SEGMENT_CONFIG, str(checkpoint), str(tmp_path / "data" / "labels"), "--out",
            str(tmp_path / "maps"), "--no-progress"]
    assert infer_tool.main(args) == 0
    assert "inputs: 2  written: 2  skipped: 0  failed: 0" in capsys.readouterr().out
    for tile in ("32TNR", "32TPR"):
        with rasterio.open(tmp_path / "maps" / f"LABEL_{tile}_classmap.tif") as cog, \
                rasterio.open(tmp_path / "data" / "labels" / f"LABEL_{tile}.tif") as label:
            assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert (cog.crs, cog.transform, cog.nodata) == (label.crs, label.transform, label.nodata)
            assert cog.colormap(1)[1][:3] == label.colormap(1)[1][:3]
            assert cog.read(1).max() < 6
    records = [json.loads(line) for line in (tmp_path / "maps" / "manifest.jsonl").read_text().splitlines()]
    assert [r["windows"] for r in records] == [1, 1]       # 32 px tiles, 128 px windows
    assert infer_tool.main(args) == 0
    assert "written: 0  skipped: 2" in capsys.readouterr().out
