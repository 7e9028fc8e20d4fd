"""`--drop NAME [NAME ...]` of tools/infer.py and tools/test.py: sets the model's
``drop_modalities`` through the config, and refuses models that cannot drop inputs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from mmengine.config import Config

from interlace.core.engine.cli import ToolError, run_cli
from interlace.tools import infer
from interlace.tools import test as tools_test
from tests.fixtures.tools import ROOT, TOY_CONFIG

SEGMENT_CONFIG = str(ROOT / "configs" / "remote_sensing" / "skysense_segment_synthetic_tiny.py")


@pytest.fixture(autouse=True)
def _restore_local_rank(monkeypatch):
    """The tools set LOCAL_RANK when it is missing; keep that out of other tests."""
    monkeypatch.setenv("LOCAL_RANK", os.environ.get("LOCAL_RANK", "0"))


@pytest.fixture(scope="module", params=["infer", "test"])
def tool(request):
    return {"infer": infer, "test": tools_test}[request.param]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    from interlace.domains.remote_sensing.data import make_synthetic_s1s2

    root = tmp_path_factory.mktemp("s1s2")
    make_synthetic_s1s2(root, tiles=3, size=32, dates=2, seed=0)
    return root


@pytest.fixture(scope="module")
def segmentor_checkpoint(tmp_path_factory) -> Path:
    """Random weights of the tiny SkySense segmentor (what matters is that they load)."""
    from mmengine.registry import init_default_scope

    from interlace.core.engine.registry import MODELS, register_all_modules

    register_all_modules()
    init_default_scope("interlace")
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(SEGMENT_CONFIG).model)
    path = tmp_path_factory.mktemp("ckpt") / "segmentor.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def test_help_documents_drop_with_an_example(tool, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--drop NAME [NAME ...]" in text
    assert "--drop sar" in text and "--drop optical" in text


def test_drop_sets_drop_modalities_in_the_config(tool):
    cfg = Config.fromfile(SEGMENT_CONFIG)
    tool.apply_drop(cfg, ["sar", "optical", "sar"])
    assert cfg.model.drop_modalities == ("sar", "optical")
    untouched = Config.fromfile(SEGMENT_CONFIG)
    tool.apply_drop(untouched, None)
    assert untouched.model.drop_modalities == ()


def test_model_without_drop_modalities_is_refused_clearly(tool):
    cfg = Config.fromfile(str(TOY_CONFIG))
    with pytest.raises(ToolError, match="model ToyRegressor has no `drop_modalities` option"):
        tool.apply_drop(cfg, ["lidar"])


def _infer(tool, args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: tool.main(args))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_infer_with_drop_sar_writes_a_map_that_differs_from_the_full_model(
        tiles, segmentor_checkpoint, tmp_path, capsys):
    label = str(tiles / "labels" / "LABEL_31TGL.tif")
    maps = {}
    for drop in ([], ["sar"]):
        out = tmp_path / ("all" if not drop else drop[0])
        args = [SEGMENT_CONFIG, str(segmentor_checkpoint), label, "--out", str(out),
                "--no-progress"] + (["--drop", *drop] if drop else [])
        code, printed, err = _infer(infer, args, capsys)
        assert code == 0, err
        assert "written: 1" in printed
        assert ("dropped modalities: " + drop[0] in printed) if drop else "dropped" not in printed
        with rasterio.open(out / "LABEL_31TGL_classmap.tif") as src:
            maps[drop[0] if drop else "all"] = src.read(1)
    # SAR changes the prediction somewhere, so the flag reached the model.
    assert not np.array_equal(maps["all"], maps["sar"])


def test_unknown_modality_name_is_a_one_line_error(tiles, segmentor_checkpoint, tmp_path, capsys):
    code, _, err = _infer(infer,
                          [SEGMENT_CONFIG, str(segmentor_checkpoint),
                           str(tiles / "labels" / "LABEL_31TGL.tif"), "--out",
                           str(tmp_path / "out"), "--drop", "lidar"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "--drop lidar" in err and "cannot drop unknown modalities ['lidar']" in err
    assert "'optical'" in err and "'sar'" in err


def test_test_tool_scores_with_a_dropped_modality(tiles, segmentor_checkpoint, tmp_path, capsys):
    args = [SEGMENT_CONFIG, str(segmentor_checkpoint), "--work-dir", str(tmp_path / "work"),
            "--drop", "optical", "--cfg-options", f"test_dataloader.dataset.data_root={tiles}",
            "log_level=WARNING"]
    assert tools_test.main(args) == 0
    printed = capsys.readouterr().out
    assert "dropped modalities: optical" in printed
    assert "seg/mIoU=" in printed
