"""Mask export: PNG / NIfTI round trips, the documented affine, the engine's bookkeeping."""
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from interlace.core.engine.batch_inference import BatchInferenceEngine
from interlace.core.engine.registry import INFERENCE_IO
from interlace.domains.medical.data.synthetic import make_synthetic_mimic
from interlace.domains.medical.evaluation.masks import (CxrImageReader, CxrMaskWriter,
                                                        radiograph_affine,
                                                        write_frontal_image_list)


def _mask(shape=(30, 20)):
    mask = np.zeros(shape, bool)
    mask[2:9, 3:15] = True   # not symmetric: a transposed or flipped read-back fails
    mask[20, 1] = True
    return mask


def _write(tmp_path, mask, **kwargs):
    writer = INFERENCE_IO.build(dict(type="CxrMaskWriter", **kwargs))
    out = tmp_path / writer.output_name("/data/img_01.jpg")
    writer.write([dict(pred_prob=torch.as_tensor(mask, dtype=torch.float32) * 0.8)],
                 "/data/img_01.jpg", str(out))
    return out


def test_png_and_nifti_read_back_equal_the_mask(tmp_path):
    mask = _mask()
    png = _write(tmp_path, mask)
    assert png.name == "img_01.png"
    pixels = np.asarray(Image.open(png))
    assert pixels.dtype == np.uint8 and set(np.unique(pixels)) == {0, 255}
    np.testing.assert_array_equal(pixels == 255, mask)
    nifti = nib.load(tmp_path / "img_01.nii.gz")
    assert nifti.shape == mask.shape and nifti.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), mask.astype(np.uint8))


def test_nifti_affine_is_the_documented_radiograph_orientation(tmp_path):
    _write(tmp_path, _mask(), pixel_spacing=(0.5, 0.25))
    nifti = nib.load(tmp_path / "img_01.nii.gz")
    np.testing.assert_allclose(nifti.affine, radiograph_affine((0.5, 0.25)))
    assert nib.aff2axcodes(nifti.affine) == ("I", "L", "A")
    # one row down = 0.5 mm towards the feet; one column right = 0.25 mm to the patient's left
    np.testing.assert_allclose(nifti.affine[:3, :3] @ [1, 0, 0], [0, 0, -0.5])
    np.testing.assert_allclose(nifti.affine[:3, :3] @ [0, 1, 0], [-0.25, 0, 0])
    assert nifti.header.get_xyzt_units()[0] == "mm"
    assert int(nifti.header["sform_code"]) == 1


def test_writer_rejects_unknown_formats():
    with pytest.raises(ValueError, match="tiff"):
        CxrMaskWriter(formats=("png", "tiff"))


def test_relative_to_keeps_the_tree_below_the_root(tmp_path):
    writer = CxrMaskWriter(relative_to=str(tmp_path))
    name = writer.output_name(str(tmp_path / "files" / "p10" / "a1.jpg"))
    assert name == os.path.join("files", "p10", "a1.png")


class _UpperHalfModel(torch.nn.Module):
    """Predicts the upper half of every image, at the size the geometry gives."""

    def test_step(self, data):
        outputs = []
        for sample in data["data_samples"]:
            height, width = sample["seg_geometry"]["ori_shape"]
            prob = torch.zeros(height, width)
            prob[: height // 2] = 1.0
            outputs.append(dict(sample, pred_prob=prob))
        return outputs


def test_engine_writes_masks_at_image_size_and_records_a_broken_input(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.full((40, 30), 90, np.uint8), mode="L").save(inputs / "a.png")
    Image.fromarray(np.full((24, 50), 90, np.uint8), mode="L").save(inputs / "b.jpg")
    (inputs / "c.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    engine = BatchInferenceEngine(_UpperHalfModel(), CxrImageReader(image_size=32),
                                  CxrMaskWriter(), str(tmp_path / "out"), show_progress=False)
    summary = engine.run(sorted(str(p) for p in inputs.iterdir()))
    assert (summary.written, summary.failed) == (2, 1)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "a.nii.gz", "a.png", "b.nii.gz", "b.png", "manifest.jsonl"]  # no temporary left
    b = np.asarray(Image.open(out / "b.png"))
    assert b.shape == (24, 50) and (b[:12] == 255).all() and (b[12:] == 0).all()
    assert nib.load(out / "a.nii.gz").shape == (40, 30)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and "c.jpg" in failed[0]["error"]


def test_frontal_image_list_leaves_laterals_out(tmp_path):
    summary = make_synthetic_mimic(tmp_path / "mimic", 6, seed=2, min_size=32, max_size=40,
                                   lateral_fraction=0.5)
    count = write_frontal_image_list(tmp_path / "mimic", tmp_path / "frontal.txt")
    listed = (tmp_path / "frontal.txt").read_text().split()
    assert count == len(listed) == summary["frontal_images"]
    assert summary["lateral_images"] > 0
    assert all(os.path.basename(p)[:-4] in {d for t in summary["truth"] for d in t["frontal"]}
               for p in listed)
