"""interlace.demo.remote_sensing: the `make demo` remote-sensing step and its scoring."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image



@pytest.fixture(scope="module")
def step():
    from interlace.demo import remote_sensing
    return remote_sensing


def _raster(path, data, nodata=255):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="uint8", crs="EPSG:32632", nodata=nodata,
                       transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
        dst.write(data.astype(np.uint8), 1)


def test_score_counts_nodata_predictions_as_misses_and_skips_unlabelled_pixels(step, tmp_path):
    label = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 0, 1, 1], [0, 255, 1, 0]])   # one nodata miss; (1, 3) is unlabelled
    _raster(tmp_path / "label.tif", label)
    _raster(tmp_path / "pred.tif", pred)
    scores = step.score_class_map(tmp_path / "pred.tif", tmp_path / "label.tif", num_classes=2)
    # class 0: TP 3, FN 1 (nodata) -> 3/4; class 1: TP 3 -> 1; OA 6/7.
    assert scores["mIoU"] == pytest.approx((0.75 + 1.0) / 2)
    assert scores["OA"] == pytest.approx(6 / 7)


def test_score_refuses_maps_on_different_grids(step, tmp_path):
    _raster(tmp_path / "label.tif", np.zeros((4, 4)))
    _raster(tmp_path / "pred.tif", np.zeros((4, 5)))
    with pytest.raises(ValueError, match="not on one grid"):
        step.score_class_map(tmp_path / "pred.tif", tmp_path / "label.tif", num_classes=2)


@pytest.mark.slow
def test_demo_step_runs_end_to_end_at_a_tiny_size(step, tmp_path):
    result = step.run(tmp_path, size=64, dates=2, pretrain_epochs=1, finetune_epochs=1,
                      quiet=True)
    scores, outputs = result["scores"], result["outputs"]
    assert set(scores) >= {"mIoU all streams", "mIoU no SAR", "mIoU no optical", "OA all streams"}
    assert all(0.0 <= scores[k] <= 1.0 for k in ("mIoU all streams", "mIoU no SAR",
                                                  "mIoU no optical"))
    label = tmp_path / "data" / "labels" / "LABEL_31TGL.tif"
    with rasterio.open(outputs["class_map"]) as cog, rasterio.open(label) as truth:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert (cog.crs, cog.transform, cog.nodata) == (truth.crs, truth.transform, truth.nodata)
        assert cog.colormap(1)[0][:3] == (30, 90, 200)
    preview = np.asarray(Image.open(outputs["preview"]))
    assert preview.shape == (64, 3 * 64 + 2 * 4, 3)        # RGB | prediction | label
    assert json.loads((tmp_path / "scores.json").read_text())["scores"] == scores
