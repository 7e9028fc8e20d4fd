"""Segmentation pairs: MIMIC and folder modes, paired geometry, bad pairs named."""
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from interlace.core.engine.registry import DATASETS
from interlace.domains.medical.data.segmentation import (CropSegd, CxrSegmentationDataset,
                                                         LoadCxrMaskd, MaskSizeError,
                                                         RandFlipSegd, ResizeLongestPadSegd,
                                                         build_segmentation_transforms,
                                                         restore_original_size)
from interlace.domains.medical.data.synthetic import make_synthetic_mimic
from interlace.domains.medical.data.transforms import ImageLoadError, LoadCxrImaged

SIZE = 32


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmimic")
    return make_synthetic_mimic(root, 10, seed=3, min_size=40, max_size=56)


def _png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, np.uint8), mode="L").save(path)
    return path


def _dataset(root, **kwargs):
    kwargs.setdefault("pipeline", list(build_segmentation_transforms(False, image_size=SIZE)
                                       .transforms))
    return CxrSegmentationDataset(data_root=str(root), **kwargs)


def test_mimic_mode_pairs_every_frontal_image_with_its_finding_mask(synthetic):
    frontal = {d for t in synthetic["truth"] for d in t["frontal"]}
    ds = _dataset(synthetic["root"], finding="heart", split=None)
    assert len(ds) == len(frontal) and ds.dropped == {}
    info = ds.get_data_info(0)
    assert info["sample_id"] in frontal
    assert info["mask_path"].endswith(os.path.join("masks", "heart", info["sample_id"] + ".png"))
    sample = ds[0]
    assert sample["img"].shape == sample["gt_seg_map"].shape == (1, SIZE, SIZE)
    assert set(sample["gt_seg_map"].unique().tolist()) == {0.0, 1.0}  # heart always drawn
    assert sample["seg_geometry"]["ori_shape"] == tuple(Image.open(info["img_path"]).size[::-1])


def test_split_comes_from_the_split_csv(synthetic):
    train = _dataset(synthetic["root"], split="train")
    expected = {d for t in synthetic["truth"] if t["split"] == "train" for d in t["frontal"]}
    assert {train.get_data_info(i)["sample_id"] for i in range(len(train))} == expected


def test_missing_mask_is_dropped_in_training_and_named_in_test_mode(synthetic, tmp_path,
                                                                     caplog):
    mask_root = tmp_path / "masks"
    dicom_ids = [d for t in synthetic["truth"] for d in t["frontal"]]
    for dicom_id in dicom_ids[1:]:  # the first image has no mask
        _png(mask_root / "opacity" / f"{dicom_id}.png", np.zeros((4, 4)))
    with caplog.at_level(logging.WARNING):
        ds = _dataset(synthetic["root"], split=None, mask_root=str(mask_root))
    assert len(ds) == len(dicom_ids) - 1 and ds.dropped == {"missing_mask": 1}
    assert dicom_ids[0] in caplog.text
    with pytest.raises(FileNotFoundError, match=f"{dicom_ids[0]}.png"):
        _dataset(synthetic["root"], split=None, mask_root=str(mask_root), test_mode=True)


def _folder(tmp_path, sizes):
    for name, (image_size, mask_size) in sizes.items():
        _png(tmp_path / "img" / f"{name}.png", np.full(image_size, 100))
        if mask_size is not None:
            mask = np.zeros(mask_size)
            mask[: mask_size[0] // 2] = 255
            _png(tmp_path / "mask" / f"{name}.png", mask)


def test_folder_mode_matches_stems_and_drops_images_without_mask(tmp_path):
    _folder(tmp_path, {"a": ((40, 30), (40, 30)), "b": ((20, 20), (20, 20)),
                       "c": ((20, 20), None)})
    ds = DATASETS.build(dict(type="CxrSegmentationDataset", data_root=str(tmp_path),
                             img_dir="img", mask_dir="mask",
                             pipeline=list(build_segmentation_transforms(
                                 False, image_size=SIZE).transforms)))
    assert [ds.get_data_info(i)["sample_id"] for i in range(len(ds))] == ["a", "b"]
    assert ds.dropped == {"missing_mask": 1}
    mask = ds[0]["gt_seg_map"][0]  # 40 x 30 -> 32 x 24, top half foreground
    assert mask[:16, 4:28].all() and not mask[16:].any() and not mask[:, :4].any()


def test_mask_of_another_size_raises_naming_both_files(tmp_path):
    _folder(tmp_path, {"a": ((40, 30), (30, 40))})
    ds = _dataset(tmp_path, img_dir="img", mask_dir="mask")
    with pytest.raises(MaskSizeError, match=r"mask .*mask[/\\]a\.png.*image .*img[/\\]a\.png"):
        ds[0]


def test_unreadable_image_is_skipped_in_training_and_raised_in_test_mode(tmp_path):
    _folder(tmp_path, {"a": ((20, 20), (20, 20)), "b": ((20, 20), (20, 20))})
    (tmp_path / "img" / "a.png").write_bytes(b"\x89PNG truncated")
    ds = _dataset(tmp_path, img_dir="img", mask_dir="mask")
    assert ds.prepare_data(0) is None and ds.skipped == {"unreadable_file": 1}
    test_ds = _dataset(tmp_path, img_dir="img", mask_dir="mask", test_mode=True)
    with pytest.raises(ImageLoadError, match=r"a\.png"):
        test_ds[0]


def test_zero_one_masks_are_not_read_as_empty(tmp_path):
    _png(tmp_path / "img.png", np.zeros((8, 8)))
    _png(tmp_path / "m.png", np.eye(8))
    sample = LoadCxrImaged()(dict(img_path=str(tmp_path / "img.png")))
    out = LoadCxrMaskd()(dict(sample, mask_path=str(tmp_path / "m.png")))
    torch.testing.assert_close(out["gt_seg_map"][0], torch.eye(8))


@pytest.mark.parametrize("shape", [(16, 21), (21, 16), (16, 16)])
def test_restore_original_size_undoes_resize_and_padding(shape):
    # Scale 64 / max(shape) is not an integer for 21: both the resize rounding and the
    # odd padding are exercised; a one-pixel offset error breaks the exact 16 x 16 case.
    rng = np.random.default_rng(0)
    mask = torch.as_tensor(rng.random(shape) > 0.5, dtype=torch.float32)[None]
    out = ResizeLongestPadSegd(size=64)(dict(img=mask.clone(), gt_seg_map=mask.clone()))
    geometry = out["seg_geometry"]
    assert out["gt_seg_map"].shape == (1, 64, 64)
    restored = restore_original_size(out["gt_seg_map"], geometry)
    assert restored.shape == (1, *shape)
    agreement = ((restored > 0.5) == (mask > 0.5)).float().mean()
    assert agreement > (0.999 if shape == (16, 16) else 0.9)
    top, left = geometry["pad"]
    h, w = geometry["resized_shape"]
    assert not out["gt_seg_map"][0, :top].any() and not out["gt_seg_map"][0, top + h:].any()
    assert not out["gt_seg_map"][0, :, :left].any() and not out["gt_seg_map"][0, :, left + w:].any()


def test_crop_is_the_same_for_image_and_mask_and_recorded():
    canvas = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 64, 64)
    sample = ResizeLongestPadSegd(size=64)(dict(img=canvas.clone(), gt_seg_map=canvas > 2000))
    crop = CropSegd(size=40, random=True).set_random_state(5)
    out = crop(dict(sample, img=canvas.clone(), gt_seg_map=canvas.clone()))
    torch.testing.assert_close(out["img"], out["gt_seg_map"])
    top, left, h, w = out["seg_geometry"]["crop"]
    torch.testing.assert_close(out["img"], canvas[:, top:top + h, left:left + w])
    restored = restore_original_size(out["img"], out["seg_geometry"])
    torch.testing.assert_close(restored[:, top:top + h, left:left + w], out["img"])
    assert restored[:, :top].abs().sum() == 0 and restored[:, top + h:].abs().sum() == 0


def test_flips_are_off_unless_asked_for():
    train = build_segmentation_transforms(True, image_size=64, crop_size=48)
    assert not any(isinstance(t, RandFlipSegd) for t in train.transforms)
    image = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    out = RandFlipSegd(prob=1.0)(dict(img=image, gt_seg_map=image.clone()))
    torch.testing.assert_close(out["img"], image.flip(-1))
    torch.testing.assert_close(out["gt_seg_map"], image.flip(-1))
