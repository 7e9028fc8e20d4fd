"""Bad input inside batch jobs, per domain: each bad input is recorded in the manifest with
an error naming it and the problem, and the run goes on to write every good one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interlace.core.engine.batch_inference import BatchInferenceEngine
from tests.faults import domain_batches as batches

pytestmark = pytest.mark.faults


def _records(out: Path) -> dict[str, dict]:
    return {r["input"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def _check(out: Path, inputs, bad: dict[str, str], fault_report, name: str) -> None:
    """`bad` maps input -> words its error must hold; every other input must be written
    and its output parse."""
    records = _records(out)
    lost = 0
    for path in inputs:
        record = records[path]
        if path in bad:
            assert record["status"] == "failed", record
            for words in bad[path].split(" | "):
                assert words in record["error"], (words, record["error"])
            assert record["output"] is None or not Path(record["output"]).exists()
        elif record["status"] != "written" or not Path(record["output"]).is_file():
            lost += 1
    fault_report.record(name, survived=lost == 0, lost=lost)
    assert lost == 0, records


def _empty_points(info, root):
    (root / "samples" / "LIDAR_TOP" / "empty.pcd.bin").write_bytes(b"")
    info["lidar_points"]["lidar_path"] = "empty.pcd.bin"


def _nan_intrinsics(info, root):
    camera = next(iter(info["images"]))
    info["images"][camera]["cam2img"] = [[np.nan, 0, 800], [0, 1266, 450], [0, 0, 1]]


def _singular_pose(info, root):
    info["lidar_points"]["lidar2ego"] = np.zeros((4, 4)).tolist()


def _one_pixel_camera(info, root):
    camera = next(iter(info["images"]))
    Image.new("RGB", (1, 1)).save(root / "samples" / camera / "tiny.jpg")
    info["images"][camera]["img_path"] = "tiny.jpg"


def test_driving_bad_samples_are_recorded_and_skipped(tmp_path, fault_report):
    db = batches.driving_inputs(tmp_path / "nuscenes", 6, mutate={
        1: _empty_points, 2: _nan_intrinsics, 3: _singular_pose, 4: _one_pixel_camera})
    out = tmp_path / "out"
    summary = BatchInferenceEngine(batches.CentroidDetector(), batches.driving_reader(db),
                                   batches.driving_writer(), str(out),
                                   show_progress=False).run(db["tokens"])
    assert (summary.written, summary.failed, summary.stopped) == (2, 4, None)
    tokens = db["tokens"]
    _check(out, tokens, {
        tokens[1]: "empty.pcd.bin: 0 bytes",
        tokens[2]: f"sample {tokens[2]}: calibration camera CAM_FRONT: cam2img holds NaN",
        tokens[3]: f"sample {tokens[3]}: calibration lidar_points: lidar2ego is singular",
        tokens[4]: f"sample {tokens[4]}: camera images differ in size | tiny.jpg: (1, 1, 3)",
    }, fault_report, "infer: driving bad samples (0 points, NaN / singular calibration, 1x1 image)")


def test_medical_bad_images_are_recorded_and_skipped(tmp_path, fault_report):
    inputs = batches.medical_inputs(tmp_path / "mimic", 4)
    tiny = tmp_path / "mimic" / "images" / "tiny.png"
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tiny)
    empty = tmp_path / "mimic" / "images" / "empty.jpg"
    empty.write_bytes(b"")
    inputs = inputs[:2] + [str(tiny), str(empty)] + inputs[2:]
    out = tmp_path / "out"
    summary = BatchInferenceEngine(batches.ThresholdSegmenter(), batches.medical_reader(),
                                   batches.medical_writer(), str(out),
                                   show_progress=False).run(inputs)
    assert (summary.written, summary.failed) == (4, 2)
    _check(out, inputs, {str(tiny): "tiny.png: image is 1 x 1 pixels",
                         str(empty): "empty.jpg: cannot read image"},
           fault_report, "infer: medical bad images (1x1, empty file)")


def test_remote_sensing_tile_with_a_rotated_label_is_mapped_north_up(tmp_path, fault_report):
    """Not an error: a tile whose label raster has a rotated geotransform is mapped on the
    north-up grid covering it, pixel for pixel (the other tile is untouched)."""
    import rasterio
    from mmengine.model import BaseModel
    from mmengine.structures import BaseDataElement

    from interlace.core.engine.registry import INFERENCE_IO
    from interlace.domains.remote_sensing.data import make_synthetic_s1s2
    from interlace.domains.remote_sensing.evaluation import GeoTiffMapWriter
    from tests.domains.remote_sensing.data.test_crs_and_rotation import _rewrite_transposed

    class LabelEcho(BaseModel):
        def forward(self, inputs, data_samples=None, mode="tensor"):
            return [BaseDataElement(metainfo=s.metainfo, pred_sem_seg=s.gt_sem_seg.clamp(max=5))
                    for s in data_samples]

    root = tmp_path / "data"
    make_synthetic_s1s2(root, tiles=2, size=32, dates=2, seed=0)
    labels = sorted((root / "labels").glob("LABEL_*.tif"))
    with rasterio.open(labels[0]) as src:
        truth, north_up = src.read(1), src.transform
    _rewrite_transposed(labels[0])
    reader = INFERENCE_IO.build(dict(type="SceneWindowReader", data_root=str(root), window=16,
                                     overlap=4))
    out = tmp_path / "out"
    summary = BatchInferenceEngine(LabelEcho(), reader, GeoTiffMapWriter(), str(out),
                                   show_progress=False).run([str(p) for p in labels])
    lost = 2 - summary.written
    with rasterio.open(out / f"{labels[0].stem}_classmap.tif") as got:
        assert got.transform == north_up
        mapped = got.read(1)
    differ = int((mapped[1:-1, 1:-1] != np.clip(truth, None, 5)[1:-1, 1:-1]).sum())
    fault_report.record("infer: remote sensing rotated label geotransform",
                        survived=lost == 0 and differ == 0, lost=lost)
    assert (summary.written, summary.failed, differ) == (2, 0, 0)
