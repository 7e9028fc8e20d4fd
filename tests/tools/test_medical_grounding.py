"""tools/analysis_tools/medical_grounding.py: a checkpoint's word attention scored against
finding masks."""
import json

import pytest
import torch

from tests.fixtures.tools import run_tool

TINY = "configs/medical/mgca_resnet18_synthetic_tiny.py"


def test_help_shows_an_example():
    proc = run_tool("tools/analysis_tools/medical_grounding.py", "--help")
    assert proc.returncode == 0
    assert "python tools/analysis_tools/medical_grounding.py configs/medical/" in proc.stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A generated set and a tiny MGCA checkpoint (random weights, saved as a state dict)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import interlace.domains.medical.models  # noqa: F401
    from interlace.core.engine.registry import MODELS
    from interlace.domains.medical.data import make_synthetic_mimic

    root = tmp_path_factory.mktemp("grounding")
    make_synthetic_mimic(root / "mimic", 60, seed=3, min_size=72, max_size=72)
    init_default_scope("interlace")
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY).model)
    torch.save(model.state_dict(), root / "tiny.pth")
    return root


def test_scores_every_located_word_and_writes_json_and_heat_maps(tiny_run):
    out = tiny_run / "out"
    proc = run_tool("tools/analysis_tools/medical_grounding.py", TINY, tiny_run / "tiny.pth",
                    "--data-root", tiny_run / "mimic", "--max-images", "4", "--out-dir", out)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "point hit % (chance)" in proc.stdout
    result = json.loads((out / "grounding.json").read_text())
    assert 1 <= result["images"] <= 4
    assert result["words"], "no located finding in 4 validate/test images"
    for key, row in result["words"].items():
        assert key.split(":")[1] in {"side", "zone", "finding"}
        assert row["n"] >= 1 and row["ratio"] == pytest.approx(row["mass"] / row["chance"])
        for name, chance in (("point", None), ("side", 0.5), ("quadrant", 0.25)):
            assert 0.0 <= row[f"{name}_rate"] <= 1.0
            if chance is not None:  # 64 px crop, layer3: an even 4 x 4 grid
                assert row[f"{name}_chance"] == pytest.approx(chance)
        assert f"{key:<18}" in proc.stdout
    for path in result["png"]:
        assert (out / path.rsplit("/", 1)[-1]).stat().st_size > 1000


def test_refuses_a_tree_without_masks_and_a_missing_checkpoint(tiny_run, tmp_path):
    (tmp_path / "files").mkdir()
    proc = run_tool("tools/analysis_tools/medical_grounding.py", TINY, tiny_run / "tiny.pth",
                    "--data-root", tmp_path)
    assert proc.returncode == 2 and "has no masks/ folder" in proc.stderr
    proc = run_tool("tools/analysis_tools/medical_grounding.py", TINY, tmp_path / "none.pth",
                    "--data-root", tiny_run / "mimic")
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr


def test_missing_masks_are_skipped_with_their_path_and_the_run_goes_on(tiny_run, tmp_path):
    import shutil

    shutil.copytree(tiny_run / "mimic", tmp_path / "mimic")
    for path in (tmp_path / "mimic" / "masks" / "opacity").glob("*.png"):
        path.unlink()
    proc = run_tool("tools/analysis_tools/medical_grounding.py", TINY, tiny_run / "tiny.pth",
                    "--data-root", tmp_path / "mimic", "--out-dir", tmp_path / "out")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads((tmp_path / "out" / "grounding.json").read_text())
    assert result["skipped"], "no opacity in the validate/test images: nothing to skip"
    assert all("masks/opacity/" in r and "no opacity mask for image" in r
               for r in result["skipped"])
    assert not any(key.startswith("opacity:") for key in result["words"])
    assert result["words"], "the effusion mentions are still scored"
    assert "skipped" in proc.stderr and "masks/opacity/" in proc.stderr
