"""Segmentation end to end: the configs build; tools/train.py fine-tunes the tiny U-Net on
generated data (the loss falls) and tools/infer.py writes PNG + NIfTI masks from it."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from interlace.core.engine.registry import DATASETS, MODELS
from interlace.domains.medical.data import segmentation  # noqa: F401  registers
from interlace.domains.medical.data.synthetic import make_synthetic_mimic
from interlace.domains.medical.models import segmentation as _model  # noqa: F401
from tests.fixtures.tools import ROOT, run_tool

TINY = ROOT / "configs/medical/unet_resnet18_synthetic_tiny.py"
SIIM = ROOT / "configs/medical/unet_resnet50_mgca_siim.py"


def test_paper_like_config_freezes_a_resnet50_mgca_encoder():
    cfg = Config.fromfile(str(SIIM))
    assert cfg.model.type == "CxrSegmenter" and cfg.model.freeze_encoder
    assert cfg.model.image_encoder == dict(type="ResNetImageEncoder", depth=50, in_channels=1)
    assert cfg.model.init_cfg == dict(type="Pretrained", checkpoint="checkpoints/mgca_resnet50.pth",
                                      key_map="mgca_image_encoder", target="image_encoder",
                                      strict=True)
    assert cfg.val_evaluator.type == "CxrDiceMetric"
    assert cfg.infer_cfg.writer.formats == ("png", "nii.gz")


def test_tiny_config_builds_its_model_and_reads_the_generated_masks(tmp_path):
    make_synthetic_mimic(tmp_path / "mimic", 4, seed=0, min_size=40, max_size=48)
    cfg = Config.fromfile(str(TINY))
    model = MODELS.build(cfg.model)
    assert model.init_cfg is None and model.freeze_encoder
    with DefaultScope.overwrite_default_scope("interlace"):  # the pipeline's types
        dataset = DATASETS.build(dict(cfg.train_dataloader.dataset,
                                      data_root=str(tmp_path / "mimic"), split=None))
        sample = dataset[0]
    assert sample["img"].shape == sample["gt_seg_map"].shape == (1, 64, 64)


def _child_config(tmp_path: Path, data_root: Path) -> Path:
    """The tiny config at 32 px on `data_root`, segmenting the heart (always present)."""
    path = tmp_path / "seg_tiny_32.py"
    path.write_text(f"""
_base_ = [{str(TINY)!r}]
_pipeline = [dict(type="LoadCxrImaged"), dict(type="LoadCxrMaskd"),
             dict(type="ResizeLongestPadSegd", size=32),
             dict(type="CxrNormalized", keys="img", max_value=255.0)]
_data = dict(data_root={str(data_root)!r}, finding="heart", pipeline=_pipeline)
train_dataloader = dict(batch_size=4, dataset=dict(_data, split=None))
val_dataloader = dict(batch_size=4, dataset=dict(_data, split=None))
model = dict(freeze_encoder=False, decoder_channels=(32, 16, 8, 8, 8))
train_cfg = dict(max_epochs=3)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1))
infer_cfg = dict(reader=dict(image_size=32))
""")
    return path


def _losses(work_dir: Path) -> list[float]:
    scalars = next(work_dir.glob("*/vis_data/scalars.json"))
    records = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.mark.slow
def test_train_then_infer_writes_png_and_nifti_masks(tmp_path):
    data = tmp_path / "mimic"
    make_synthetic_mimic(data, 12, seed=0, min_size=64, max_size=80, lateral_fraction=0.0)
    config = _child_config(tmp_path, data)
    work = tmp_path / "work"
    train = run_tool("tools/train.py", config, "--work-dir", work, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    losses = _losses(work)
    assert len(losses) >= 6 and np.mean(losses[-3:]) < np.mean(losses[:3])
    checkpoint = work / "epoch_3.pth"
    images = sorted(str(p) for p in (data / "files").rglob("*.jpg"))
    out = tmp_path / "masks"
    infer = run_tool("tools/infer.py", config, checkpoint, *images, "--out", out,
                     "--no-progress", timeout=300)
    assert infer.returncode == 0, infer.stderr[-3000:]
    assert f"inputs: {len(images)}  written: {len(images)}" in infer.stdout
    for image in images:
        stem = Path(image).stem
        png = np.asarray(Image.open(out / f"{stem}.png"))
        assert png.shape == np.asarray(Image.open(image)).shape  # the image's own size
        assert set(np.unique(png)) <= {0, 255}
        nifti = nib.load(out / f"{stem}.nii.gz")
        np.testing.assert_array_equal(np.asarray(nifti.dataobj), png // 255)
