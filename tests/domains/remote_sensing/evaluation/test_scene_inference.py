"""Scene reader + model + GeoTIFF writer through the batch-inference engine: the tile is
streamed window by window, blended, and written as one COG with the tile's georeference."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from interlace.core.engine.batch_inference import BatchInferenceEngine
from interlace.core.engine.registry import INFERENCE_IO
from interlace.domains.remote_sensing.data import LANDCOVER_PALETTE, make_synthetic_s1s2
from interlace.domains.remote_sensing.evaluation import GeoTiffMapWriter, sliding_window_mosaic


class LabelEcho(BaseModel):
    """Predicts the ground truth (with its metainfo), so the written map is checkable."""

    def forward(self, inputs, data_samples=None, mode="tensor"):
        return [BaseDataElement(metainfo=s.metainfo, pred_sem_seg=s.gt_sem_seg.clamp(max=5))
                for s in data_samples]


def test_engine_writes_a_cog_per_tile_and_resumes(tmp_path):
    root = tmp_path / "data"
    make_synthetic_s1s2(root, tiles=2, size=32, dates=2, seed=0)
    reader = INFERENCE_IO.build(dict(type="SceneWindowReader", data_root=str(root), window=16,
                                     overlap=4))
    engine = BatchInferenceEngine(LabelEcho(), reader, GeoTiffMapWriter(), str(tmp_path / "out"),
                                  show_progress=False)
    inputs = sorted(str(p) for p in (root / "labels").glob("*.tif"))
    summary = engine.run(inputs + [str(root / "labels" / "LABEL_NOPE.tif")])
    assert (summary.written, summary.failed) == (2, 1)
    assert "no tile" in summary.failures[0][1]
    for path in inputs:
        out = tmp_path / "out" / (path.rsplit("/", 1)[1][:-4] + "_classmap.tif")
        with rasterio.open(out) as got, rasterio.open(path) as label:
            assert got.crs == label.crs and got.transform == label.transform
            np.testing.assert_array_equal(got.read(1), label.read(1))
    assert engine.run(inputs).skipped == 2                      # resumable


def test_scene_windows_cover_the_tile_row_major(tmp_path):
    make_synthetic_s1s2(tmp_path, tiles=1, size=40, dates=1, seed=0)
    reader = INFERENCE_IO.build(dict(type="SceneWindowReader", data_root=str(tmp_path),
                                     window=16, overlap=4))
    label = next((tmp_path / "labels").glob("*.tif"))
    windows = [(int(w.row_off), int(w.col_off)) for w, batch in reader.iter_windows(str(label))]
    assert windows == sorted(windows) and windows[0] == (0, 0) and windows[-1] == (24, 24)
    assert reader.scene_shape(str(label)) == (40, 40)


class LabelProbabilities(BaseModel):
    """seg_probs = one-hot of the ground truth, keeping the reader's data samples (and so
    their ``input_valid``); records the size of every window it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.window_shapes: list[tuple[int, int]] = []

    def forward(self, inputs, data_samples=None, mode="tensor"):
        for sample in data_samples:
            gt = sample.gt_sem_seg.clamp(max=5)
            self.window_shapes.append(tuple(gt.shape))
            sample.set_field(torch.nn.functional.one_hot(gt, 6).permute(2, 0, 1).float(),
                             "seg_probs")
        return data_samples


def _blank_out(root, rows: slice, cols: slice) -> None:
    """Make `rows` x `cols` nodata in every S2 and S1 file (no valid observation)."""
    for folder, nodata in (("s2", 0), ("s1", -9999)):
        for path in (root / folder).glob("*.tif"):
            with rasterio.open(path, "r+") as dst:
                data = dst.read()
                data[:, rows, cols] = nodata
                dst.write(data)


def test_a_tile_is_streamed_in_windows_and_blended_into_one_cog(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_synthetic_s1s2(root, tiles=1, size=96, dates=1, seed=0)
    _blank_out(root, slice(0, 6), slice(0, 10))
    held = []
    original_finish = sliding_window_mosaic.SlidingWindowMosaic.finish

    def spy_finish(mosaic):
        held.append(mosaic.max_rows_held)
        return original_finish(mosaic)
    monkeypatch.setattr(sliding_window_mosaic.SlidingWindowMosaic, "finish", spy_finish)

    # max_pixels below the tile: `read` would refuse it, so this can only work streamed.
    reader = INFERENCE_IO.build(dict(type="SceneWindowReader", data_root=str(root), window=32,
                                     overlap=8, max_pixels=1000))
    model = LabelProbabilities()
    label_path = next((root / "labels").glob("*.tif"))
    summary = BatchInferenceEngine(model, reader, GeoTiffMapWriter(), str(tmp_path / "out"),
                                   show_progress=False).run([str(label_path)])
    assert summary.written == 1, summary.failures
    assert set(model.window_shapes) == {(32, 32)} and len(model.window_shapes) == 16
    assert held and held[0] <= 32 + 24, "the mosaic must hold about a window of rows, not the tile"
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    assert record["windows"] == 16

    out = tmp_path / "out" / f"{label_path.stem}_classmap.tif"
    with rasterio.open(out) as got, rasterio.open(label_path) as label:
        assert got.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert got.crs == label.crs and got.transform == label.transform
        assert got.nodata == label.nodata == 255
        assert got.colormap(1)[3][:3] == LANDCOVER_PALETTE[3]
        classes, expected = got.read(1), label.read(1)
    # Pixels no date observed are nodata; everywhere else the blend is the label itself.
    assert (classes[:6, :10] == 255).all()
    expected[:6, :10] = 255
    np.testing.assert_array_equal(classes, expected)


def test_describe_gives_the_tile_grid_and_data_root_defaults_to_the_inputs_root(tmp_path):
    make_synthetic_s1s2(tmp_path, tiles=2, size=32, dates=1, seed=0)
    reader = INFERENCE_IO.build(dict(type="SceneWindowReader", window=16, overlap=4))
    s2_file = sorted((tmp_path / "s2").glob("S2_32TPR_*.tif"))[0]
    scene = reader.describe(str(s2_file))
    with rasterio.open(tmp_path / "labels" / "LABEL_32TPR.tif") as label:
        assert scene["crs"] == "EPSG:32632" and scene["transform"] == tuple(label.transform)[:6]
    assert (scene["tile"], scene["height"], scene["width"], scene["nodata"]) == ("32TPR", 32, 32, 255)
    window, batch = next(reader.iter_windows(str(s2_file)))
    assert batch["data_samples"][0].input_valid.shape == (16, 16)
    assert batch["data_samples"][0].input_valid.all()


def test_writer_refuses_a_scene_without_georeference(tmp_path):
    from rasterio.windows import Window

    sample = BaseDataElement(seg_probs=torch.ones(6, 4, 4) / 6)
    stream = iter([(Window(0, 0, 4, 4), [sample])])
    with pytest.raises(ValueError, match=r"in\.tif: .*lacks \['crs', 'transform'\]"):
        GeoTiffMapWriter().write_stream(stream, dict(height=4, width=4), "in.tif",
                                        str(tmp_path / "x.tif"))
    assert list(tmp_path.iterdir()) == []
