"""Chest X-ray segmentation data: image + binary mask pairs and their paired transforms.

Two sources of pairs:

- a MIMIC-CXR-JPG tree (through :class:`MimicCxrIndex`, frontal images, split from the
  split CSV) with one mask per image and finding at ``<mask_root>/<finding>/<dicom_id>.png``
  (the layout :func:`make_synthetic_mimic` writes);
- a generic image folder + mask folder with matching file stems (SIIM pneumothorax or
  RSNA pneumonia after conversion of their RLE / boxes to PNG masks).

The transforms apply the same geometry to ``img`` and ``gt_seg_map`` (MGCA's
aspect-preserving resize with zero padding, then an optional crop) and record it in
``seg_geometry`` so a prediction can be mapped back onto the original image
(:func:`restore_original_size`). Horizontal flips exist but are off by default: on a
frontal radiograph the heart is on the patient's left, and a flip makes that ambiguous.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.dataset import BaseDataset
from monai.transforms import RandFlipd, Randomizable, SpatialCropd
from torch import Tensor

from interlace.core.engine.registry import DATASETS, TRANSFORMS

from .mimic import FRONTAL_VIEWS, SPLITS, MimicCxrIndex
from .transforms import (DICOM_SUFFIXES, CxrCompose, CxrNormalized, ImageLoadError,
                         LoadCxrImaged, ResizeLongestPadd)

__all__ = ["MaskSizeError", "LoadCxrMaskd", "ResizeLongestPadSegd", "CropSegd",
           "RandFlipSegd", "CxrSegmentationDataset", "build_segmentation_transforms",
           "restore_original_size", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *DICOM_SUFFIXES)
_LOGGED_PER_REASON = 5


class MaskSizeError(ValueError):
    """A mask whose size differs from its image's; the message names both files."""


def _plain(value: Any) -> Tensor:
    """A plain float32 tensor: MONAI's MetaTensor metadata is not needed past the
    transforms and costs time in collation and in every op of the loss."""
    tensor = value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)
    return tensor.float()


@TRANSFORMS.register_module()
class LoadCxrMaskd:
    """Load a binary mask (PNG 0/255, or any grey file) as a (1, H, W) float32 0/1 map.

    Args:
        path_key: the sample key holding the mask path.
        mask_key: the key the mask is written to.
        image_key, image_path_key: the already loaded image and its path; when present
            the mask's size is checked against it.
        threshold: grey values above it are foreground (127: the middle of 0/255). A
            mask whose maximum is 1 (saved as 0/1, common after RLE conversion) is
            read with 0.5 instead, so it does not come out empty.

    Raises :class:`ImageLoadError` naming the file when it is missing or unreadable, and
    :class:`MaskSizeError` naming both files when the sizes differ (a resize would hide
    a mismatched pair, so this is never repaired silently).
    """

    def __init__(self, path_key: str = "mask_path", mask_key: str = "gt_seg_map",
                 image_key: str = "img", image_path_key: str = "img_path",
                 threshold: float = 127.0) -> None:
        self.path_key, self.mask_key, self.threshold = path_key, mask_key, threshold
        self.image_key, self.image_path_key = image_key, image_path_key
        self._load = LoadCxrImaged(path_key=path_key, image_key=mask_key)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = self._load(sample)
        mask = out[self.mask_key]
        image = out.get(self.image_key)
        if image is not None and tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
            raise MaskSizeError(
                f"mask {out[self.path_key]} is {tuple(mask.shape[-2:])} (H, W) but its image "
                f"{out.get(self.image_path_key)} is {tuple(image.shape[-2:])}")
        mask = _plain(mask)
        threshold = self.threshold if float(mask.max()) > 1.0 else 0.5
        out[self.mask_key] = (mask > threshold).float()
        return out


@TRANSFORMS.register_module()
class ResizeLongestPadSegd:
    """:class:`ResizeLongestPadd` on the image and its mask, recording the geometry.

    The mask is resized with the image's area interpolation and thresholded at 0.5
    (a majority vote over the source pixels), which keeps thin structures better than
    nearest-neighbour sampling when a 3000 px radiograph shrinks to 224.

    Adds ``seg_geometry = dict(ori_shape=(H, W), resized_shape=(h, w), pad=(top, left),
    canvas=size, crop=(top, left, height, width))`` (crop: the whole canvas until
    :class:`CropSegd` changes it). A missing mask key is allowed (inference).
    """

    def __init__(self, size: int = 224, image_key: str = "img",
                 mask_key: str = "gt_seg_map") -> None:
        self.size, self.image_key, self.mask_key = size, image_key, mask_key
        self._image = ResizeLongestPadd(keys=image_key, size=size)
        self._mask = ResizeLongestPadd(keys=mask_key, size=size)

    def geometry(self, height: int, width: int) -> dict[str, tuple[int, ...] | int]:
        """Where an (height, width) image lands on the square canvas. MONAI's
        ``Resize(size_mode='longest')`` rounds each side of ``side * size / longest``;
        its symmetric padding puts the smaller half before (checked in the tests)."""
        scale = self.size / max(height, width)
        resized = (int(round(height * scale)), int(round(width * scale)))
        pad = ((self.size - resized[0]) // 2, (self.size - resized[1]) // 2)
        return dict(ori_shape=(height, width), resized_shape=resized, pad=pad,
                    canvas=self.size, crop=(0, 0, self.size, self.size))

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        height, width = (int(s) for s in sample[self.image_key].shape[-2:])
        out = self._image(sample)
        if self.mask_key in out:
            out[self.mask_key] = (_plain(self._mask(out)[self.mask_key]) > 0.5).float()
        out["seg_geometry"] = self.geometry(height, width)
        return out


@TRANSFORMS.register_module()
class CropSegd(Randomizable):
    """A ``size`` square crop of image and mask: random for training, centred otherwise.

    Updates ``seg_geometry['crop']`` so predictions can be placed back on the canvas.
    """

    def __init__(self, size: int = 224, random: bool = True, image_key: str = "img",
                 mask_key: str = "gt_seg_map") -> None:
        self.size, self.random = size, random
        self.keys = [image_key, mask_key]
        self._offset = (0, 0)

    def randomize(self, data: tuple[int, int]) -> None:
        height, width = data
        if self.random:
            self._offset = (int(self.R.randint(0, height - self.size + 1)),
                            int(self.R.randint(0, width - self.size + 1)))
        else:  # MONAI's CenterSpatialCrop rounds the same way
            self._offset = ((height - self.size) // 2, (width - self.size) // 2)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        height, width = (int(s) for s in sample[self.keys[0]].shape[-2:])
        if height < self.size or width < self.size:
            raise ValueError(f"CropSegd: cannot crop {self.size} from {(height, width)} "
                             f"({sample.get('img_path')}); resize to at least the crop size")
        self.randomize((height, width))
        top, left = self._offset
        crop = SpatialCropd(keys=self.keys, roi_slices=[slice(top, top + self.size),
                                                        slice(left, left + self.size)],
                            allow_missing_keys=True)
        out = crop(dict(sample))
        for key in self.keys:
            if key in out:
                out[key] = _plain(out[key])
        geometry = dict(out.get("seg_geometry") or {})
        if geometry:
            old_top, old_left = geometry["crop"][:2]
            geometry["crop"] = (old_top + top, old_left + left, self.size, self.size)
            out["seg_geometry"] = geometry
        return out


@TRANSFORMS.register_module()
class RandFlipSegd:
    """Left-right flip of image and mask with probability ``prob`` (training only).

    Off by default: laterality carries meaning in a chest X-ray (heart on the patient's
    left, a "right lower lobe" opacity), so flipped images teach the wrong anatomy
    unless the task is symmetric. ``seg_geometry`` is not updated (never use at test).
    """

    def __init__(self, prob: float = 0.0, image_key: str = "img",
                 mask_key: str = "gt_seg_map") -> None:
        self._flip = RandFlipd(keys=[image_key, mask_key], prob=prob, spatial_axis=1,
                               allow_missing_keys=True)
        self.keys = (image_key, mask_key)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = self._flip(dict(sample))
        for key in self.keys:
            if key in out:
                out[key] = _plain(out[key])
        return out


def build_segmentation_transforms(train: bool, *, image_size: int = 224,
                                  crop_size: int | None = None, flip_prob: float = 0.0,
                                  max_value: float = 255.0, with_mask: bool = True
                                  ) -> CxrCompose:
    """Load image (and mask), resize long side + pad to ``image_size``, crop, normalise.

    ``crop_size`` (training only) crops randomly; evaluation sees the whole padded
    canvas so that every pixel of the original image gets a prediction. Output
    ``img``: float32 (1, S, S) with mean 0.5 / std 0.5 normalisation as in MGCA
    pre-training; ``gt_seg_map``: float32 (1, S, S) in {0, 1}.
    """
    steps: list[Callable] = [LoadCxrImaged()]
    if with_mask:
        steps.append(LoadCxrMaskd())
    steps.append(ResizeLongestPadSegd(size=image_size))
    if train and crop_size and crop_size < image_size:
        steps.append(CropSegd(size=crop_size, random=True))
    if train and flip_prob > 0:
        steps.append(RandFlipSegd(prob=flip_prob))
    steps.append(CxrNormalized(keys="img", max_value=max_value))
    return CxrCompose(steps)


def restore_original_size(prob: Tensor, geometry: Mapping[str, Any]) -> Tensor:
    """Undo crop, padding and resize: a network-frame map back onto the original image.

    Args:
        prob: (C, h, w) map in the network's input frame (after crop).
        geometry: the sample's ``seg_geometry`` (see :class:`ResizeLongestPadSegd`).

    Returns:
        (C, H, W) map at ``ori_shape``, bilinear; pixels the crop left out get 0.
    """
    canvas_size = int(geometry["canvas"])
    top, left, height, width = (int(v) for v in geometry["crop"])
    if tuple(prob.shape[-2:]) != (height, width):
        raise ValueError(f"prediction is {tuple(prob.shape[-2:])} but the sample's crop is "
                         f"{(height, width)}")
    canvas = prob.new_zeros((prob.shape[0], canvas_size, canvas_size))
    canvas[:, top:top + height, left:left + width] = prob
    pad_top, pad_left = (int(v) for v in geometry["pad"])
    res_h, res_w = (int(v) for v in geometry["resized_shape"])
    inner = canvas[:, pad_top:pad_top + res_h, pad_left:pad_left + res_w]
    ori_h, ori_w = (int(v) for v in geometry["ori_shape"])
    return F.interpolate(inner[None], size=(ori_h, ori_w), mode="bilinear",
                         align_corners=False)[0]


@DATASETS.register_module()
class CxrSegmentationDataset(BaseDataset):
    """Chest X-ray images with a binary mask for one finding.

    MIMIC mode (default): ``data_root`` is a MIMIC-CXR-JPG tree; frontal images of
    ``split`` with their mask ``<mask_root>/<finding>/<dicom_id>.png``
    (``mask_root`` defaults to ``<data_root>/masks``). The index needs the reports and
    CSVs as for pre-training (:class:`MimicCxrIndex`).

    Folder mode (``img_dir`` and ``mask_dir`` given, relative to ``data_root`` unless
    absolute): every image in ``img_dir`` (``IMAGE_SUFFIXES``) with the mask of the same
    stem, ``<mask_dir>/<stem><mask_suffix>``.

    Each sample before the pipeline: ``dict(img_path, mask_path, sample_id, finding)``
    (+ ``study_id``, ``subject_id``, ``split`` in MIMIC mode).

    Problems: an image without a mask is dropped with a logged reason and counted in
    :attr:`dropped` (``test_mode``: ``FileNotFoundError`` naming the mask, since scoring
    fewer images would change the result); an unreadable image or mask found while
    loading is skipped and counted in :attr:`skipped` (``test_mode``: the
    :class:`ImageLoadError` propagates). A mask whose size differs from its image's
    always raises :class:`MaskSizeError` naming both: it means the pairing is wrong.
    """

    METAINFO = dict(classes=("background", "foreground"))

    def __init__(self, data_root: str = "", finding: str = "opacity",
                 split: str | Sequence[str] | None = "train", *,
                 mask_root: str | None = None, img_dir: str | None = None,
                 mask_dir: str | None = None, mask_suffix: str = ".png",
                 views: Sequence[str] = FRONTAL_VIEWS, cache_path: str | None = None,
                 pipeline: Sequence[dict | Callable] = (), test_mode: bool = False,
                 **kwargs: Any) -> None:
        if (img_dir is None) != (mask_dir is None):
            raise ValueError("folder mode needs both img_dir and mask_dir")
        wanted = [split] if isinstance(split, str) else list(split or SPLITS)
        unknown = [s for s in wanted if s not in SPLITS]
        if unknown and img_dir is None:
            raise ValueError(f"unknown MIMIC-CXR split(s) {unknown}; use {list(SPLITS)}")
        self.finding, self.splits, self.views = finding, wanted, tuple(views)
        self.mask_root, self.img_dir, self.mask_dir = mask_root, img_dir, mask_dir
        self.mask_suffix, self.cache_path = mask_suffix, cache_path
        self.dropped: Counter = Counter()
        self.skipped: Counter = Counter()
        self._logged: Counter = Counter()
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        # A tuple: mmengine reads a plain string value of metainfo as a file to open.
        metainfo.setdefault("classes", ("background", finding))
        super().__init__(data_root=data_root, pipeline=list(pipeline), test_mode=test_mode,
                         metainfo=metainfo, **kwargs)

    def _resolve(self, path: str) -> Path:
        return Path(path) if Path(path).is_absolute() or not self.data_root \
            else Path(self.data_root) / path

    def _drop(self, reason: str, what: str) -> None:
        self.dropped[reason] += 1
        self._logged[reason] += 1
        if self._logged[reason] <= _LOGGED_PER_REASON:
            logger.warning("CxrSegmentationDataset: dropped %s (%s)", what,
                           reason.replace("_", " "))

    def _missing_mask(self, image: Path, mask: Path) -> None:
        if self.test_mode:
            raise FileNotFoundError(f"mask {mask} for image {image} does not exist "
                                    "(test mode scores every image, so it is not skipped)")
        self._drop("missing_mask", f"{image}: no mask {mask}")

    def load_data_list(self) -> list[dict]:
        data_list = (self._load_folder() if self.img_dir is not None else self._load_mimic())
        summary = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        logger.info("CxrSegmentationDataset (%s): %d samples; dropped: %s", self.finding,
                    len(data_list), summary)
        return data_list

    def _load_mimic(self) -> list[dict]:
        root = Path(self.data_root)
        mask_root = self._resolve(self.mask_root) if self.mask_root else root / "masks"
        # In test mode a missing image must fail loudly (by name) in the pipeline
        # instead of vanishing from the index.
        index = MimicCxrIndex(root, unit="image", views=self.views,
                              check_images=not self.test_mode,
                              cache_path=self.cache_path).build()
        for reason, count in index.dropped.items():
            if reason != "lateral_view":
                self.dropped[reason] += count
        data_list = []
        for record in index.records:
            if record.split not in self.splits:
                continue
            dicom_id = record.dicom_ids[0]
            mask = mask_root / self.finding / f"{dicom_id}{self.mask_suffix}"
            if not mask.is_file():
                self._missing_mask(Path(record.img_path), mask)
                continue
            data_list.append(dict(img_path=record.img_path, mask_path=str(mask),
                                  sample_id=dicom_id, finding=self.finding,
                                  study_id=record.study_id, subject_id=record.subject_id,
                                  split=record.split))
        return data_list

    def _load_folder(self) -> list[dict]:
        img_dir, mask_dir = self._resolve(self.img_dir), self._resolve(self.mask_dir)
        for folder, what in ((img_dir, "image"), (mask_dir, "mask")):
            if not folder.is_dir():
                raise FileNotFoundError(f"{what} folder {folder} does not exist")
        images = sorted(p for p in img_dir.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        stems: dict[str, Path] = {}
        for path in images:
            if path.stem in stems:  # the mask could belong to either
                raise ValueError(f"images {stems[path.stem]} and {path} share the stem "
                                 f"{path.stem!r}; their mask would be ambiguous")
            stems[path.stem] = path
        data_list = []
        for stem, path in stems.items():
            mask = mask_dir / f"{stem}{self.mask_suffix}"
            if not mask.is_file():
                self._missing_mask(path, mask)
                continue
            data_list.append(dict(img_path=str(path), mask_path=str(mask), sample_id=stem,
                                  finding=self.finding))
        if not data_list:
            raise FileNotFoundError(f"no image in {img_dir} has a mask in {mask_dir} "
                                    f"(images: {len(images)}, mask suffix {self.mask_suffix})")
        return data_list

    def prepare_data(self, idx: int) -> Any:
        try:
            return super().prepare_data(idx)
        except ImageLoadError as error:
            if self.test_mode:
                raise
            self.skipped["unreadable_file"] += 1
            logger.warning("CxrSegmentationDataset: skipped sample %d: %s", idx, error)
            return None
