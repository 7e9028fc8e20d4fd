"""CXR transforms: shapes, normalisation, aspect-preserving resize, bad files named."""
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from interlace.core.engine.registry import TRANSFORMS
from interlace.domains.medical.data.transforms import (ImageLoadError, LoadCxrImaged,
                                                       build_cxr_transforms)


def _jpeg(path, pixels):
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(path, quality=95)
    return str(path)


def _dicom(path, with_pixels: bool):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "synthetic"
    if with_pixels:
        pixels = np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) % 256
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def test_constant_white_image_normalises_to_one(tmp_path):
    path = _jpeg(tmp_path / "white.jpg", np.full((300, 300), 255))
    image = build_cxr_transforms(train=False)({"img_path": path})["img"]
    assert type(image) is torch.Tensor and image.dtype == torch.float32
    assert image.shape == (1, 224, 224)
    torch.testing.assert_close(image, torch.ones(1, 224, 224))


def test_wide_image_is_padded_not_stretched(tmp_path):
    # 256 rows x 512 columns -> 128 x 256 after the resize, then 64 zero rows above and
    # below; the centre crop (offset 16) keeps 48 padded rows on each side.
    path = _jpeg(tmp_path / "wide.jpg", np.full((256, 512), 255))
    image = build_cxr_transforms(train=False)({"img_path": path})["img"][0]
    column = image[:, 112]
    assert torch.all(column[:48] == -1.0) and torch.all(column[-48:] == -1.0)
    torch.testing.assert_close(column[48:176], torch.ones(128))
    torch.testing.assert_close(image[112], torch.ones(224))  # full width: not padded


def test_eval_crop_is_deterministic_and_train_crop_random(tmp_path):
    rng = np.random.default_rng(0)
    path = _jpeg(tmp_path / "noise.jpg", rng.integers(0, 256, (256, 256)))
    evaluate = build_cxr_transforms(train=False)
    assert torch.equal(evaluate({"img_path": path})["img"], evaluate({"img_path": path})["img"])
    train = build_cxr_transforms(train=True)
    train.set_random_state(seed=0)
    crops = [train({"img_path": path})["img"] for _ in range(4)]
    assert all(c.shape == (1, 224, 224) for c in crops)
    assert not all(torch.equal(crops[0], c) for c in crops[1:])


def test_rgb_jpeg_is_read_as_one_grayscale_channel(tmp_path):
    path = tmp_path / "rgb.jpg"
    Image.fromarray(np.full((64, 48, 3), 200, np.uint8)).save(path)
    image = LoadCxrImaged()({"img_path": str(path)})["img"]
    assert image.shape == (1, 64, 48)  # rows first, like the picture


def test_truncated_jpeg_error_names_the_file(tmp_path):
    path = tmp_path / "s5000" / "broken.jpg"
    path.parent.mkdir()
    _jpeg(path, np.random.default_rng(0).integers(0, 256, (256, 256)))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageLoadError, match=r"s5000/broken\.jpg.*truncated"):
        LoadCxrImaged()({"img_path": str(path)})


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(ImageLoadError, match=r"nothing\.png: image file does not exist"):
        LoadCxrImaged()({"img_path": str(tmp_path / "nothing.png")})


def test_dicom_is_loaded_and_dicom_without_pixels_is_named(tmp_path):
    image = LoadCxrImaged()({"img_path": _dicom(tmp_path / "ok.dcm", True)})["img"]
    assert image.shape == (1, 40, 30)
    assert image[0, 1, 0] == 30  # row-major: second row starts at pixel 30
    empty = _dicom(tmp_path / "no_pixels.dcm", False)
    with pytest.raises(ImageLoadError, match=r"no_pixels\.dcm: DICOM has no pixel data"):
        LoadCxrImaged()({"img_path": empty})


def test_transforms_are_registered_and_buildable_from_config():
    for name in ("LoadCxrImaged", "ResizeLongestPadd", "CxrCropd", "CxrNormalized"):
        assert TRANSFORMS.get(name) is not None
    crop = TRANSFORMS.build(dict(type="CxrCropd", size=8, random=False))
    out = crop({"img": torch.zeros(1, 10, 12)})
    assert out["img"].shape == (1, 8, 8)


def test_eval_sizes_come_from_the_training_pipeline_with_mgca_defaults():
    from mmengine.config import ConfigDict

    from interlace.domains.medical.data.transforms import eval_sizes_from_config

    cfg = ConfigDict(train_dataloader=dict(dataset=dict(pipeline=[
        dict(type="LoadCxrImaged"), dict(type="ResizeLongestPadd", size=108),
        dict(type="CxrCropd", size=96, random=True)])))
    assert eval_sizes_from_config(cfg) == (108, 96)
    cfg.train_dataloader.dataset.pipeline = [dict(type="CxrCropd", size=64)]
    assert eval_sizes_from_config(cfg) == (256, 64)
    assert eval_sizes_from_config(ConfigDict()) == (256, 224)
    assert eval_sizes_from_config(ConfigDict(train_dataloader=dict(dataset=dict()))) == (256, 224)
