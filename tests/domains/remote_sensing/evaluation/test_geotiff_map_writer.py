from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from mmengine.structures import BaseDataElement
from PIL import Image

from interlace.core.engine.registry import INFERENCE_IO
from interlace.domains.remote_sensing.data import LANDCOVER_PALETTE
from interlace.domains.remote_sensing.evaluation import (GeoTiffMapWriter, save_map_preview,
                                                         write_class_map_cog)

TRANSFORM = (10.0, 0.0, 600000.0, 0.0, -10.0, 5000000.0)


def test_cog_is_tiled_with_overviews_and_keeps_georeference(tmp_path):
    classes = np.random.default_rng(0).integers(0, 6, (600, 520)).astype(np.uint8)
    classes[:5] = 255
    path = tmp_path / "map.tif"
    write_class_map_cog(str(path), classes, "EPSG:32631", TRANSFORM)
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.block_shapes == [(256, 256)]
        assert src.overviews(1) and src.overviews(1)[0] == 2
        assert src.crs.to_epsg() == 32631 and tuple(src.transform)[:6] == TRANSFORM
        assert src.nodata == 255
        assert src.colormap(1)[3][:3] == LANDCOVER_PALETTE[3]
        np.testing.assert_array_equal(src.read(1), classes)
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


def test_failure_leaves_no_output_and_no_temporaries(tmp_path, monkeypatch):
    def broken_copy(*args, **kwargs):
        raise RuntimeError("disk full (injected)")
    monkeypatch.setattr(rasterio.shutil, "copy", broken_copy)
    with pytest.raises(RuntimeError, match="injected"):
        write_class_map_cog(str(tmp_path / "map.tif"), np.zeros((64, 64), np.uint8),
                            "EPSG:32632", TRANSFORM)
    assert list(tmp_path.iterdir()) == []


def test_writer_takes_model_output_with_metainfo(tmp_path):
    writer = INFERENCE_IO.build(dict(type="GeoTiffMapWriter"))
    assert writer.output_name("/data/labels/LABEL_32TNR.tif") == "LABEL_32TNR_classmap.tif"
    pred = np.arange(32 * 48).reshape(32, 48) % 6
    sample = BaseDataElement(metainfo=dict(crs="EPSG:32632", transform=TRANSFORM),
                             pred_sem_seg=pred)
    writer.write([sample], "in.tif", str(tmp_path / "out.tif"))
    with rasterio.open(tmp_path / "out.tif") as src:
        np.testing.assert_array_equal(src.read(1), pred)
        assert src.crs.to_epsg() == 32632
    with pytest.raises(ValueError, match="crs/transform"):
        writer.write([dict(pred_sem_seg=pred)], "in.tif", str(tmp_path / "x.tif"))


def test_windowed_write_blends_into_one_cog(tmp_path):
    from rasterio.windows import Window
    logits = np.zeros((3, 80, 100), np.float32)
    logits[2] = 1.0
    windows = [(Window(c, r, 32, 32), logits[:, r:r + 32, c:c + 32])
               for r in (0, 24, 48) for c in (0, 24, 48, 68)]
    GeoTiffMapWriter().write_windows(windows, 80, 100, "EPSG:32632", TRANSFORM, 3,
                                     str(tmp_path / "scene.tif"))
    with rasterio.open(tmp_path / "scene.tif") as src:
        assert (src.read(1) == 2).all()


def test_preview_png_puts_map_next_to_true_colour(tmp_path):
    classes = np.zeros((20, 30), np.uint8)
    classes[:, 15:] = 1
    rgb = np.random.default_rng(0).random((3, 20, 30)).astype(np.float32) * 0.3
    path = save_map_preview(str(tmp_path / "p.png"), classes, rgb)
    image = np.asarray(Image.open(path))
    assert image.shape == (20, 30 * 2 + 4, 3)
    assert tuple(image[0, 34 + 20]) == LANDCOVER_PALETTE[1]
