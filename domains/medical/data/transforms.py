"""Chest X-ray image transforms: MONAI dict transforms behind registered names.

Each class is a small callable on a sample dict, so an mmengine pipeline config can name
it (``dict(type='LoadCxrImaged')``) and MONAI does the work: ``LoadImaged`` with
``PILReader`` for JPG / PNG (DICOM through :mod:`.dicom`), ``Resized(size_mode='longest')`` +
``SpatialPadd`` for MGCA's aspect-preserving resize with zero padding,
``RandSpatialCropd`` / ``CenterSpatialCropd`` for the crop, ``ScaleIntensityRanged`` +
``NormalizeIntensityd`` for mean 0.5 / std 0.5 on [0, 1] intensities.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from monai.data import MetaTensor, PILReader
from monai.transforms import (CenterSpatialCropd, Compose, EnsureTyped, LoadImaged,
                              NormalizeIntensityd, RandSpatialCropd, Resized,
                              ScaleIntensityRanged, SpatialPadd)
from monai.transforms import Randomizable

from interlace.core.engine.registry import TRANSFORMS

from .dicom import DICOM_SUFFIXES, NoWindow, is_dicom_file, read_dicom_image
from .image_errors import ImageLoadError
from .luminance import pil_to_grayscale

__all__ = ["ImageLoadError", "CxrCompose", "LoadCxrImaged", "ResizeLongestPadd", "CxrCropd",
           "CxrNormalized", "build_cxr_transforms", "eval_sizes_from_config",
           "DICOM_SUFFIXES"]

# Smallest side LoadCxrImaged accepts. Real radiographs have thousands of pixels a side
# and the generated ones 64 or more; a few pixels is an icon or a broken export.
MIN_IMAGE_SIDE = 8


@contextlib.contextmanager
def _quiet_optional_readers() -> Iterator[None]:
    """LoadImage instantiates every reader MONAI knows; the optional GPU DICOM decoder
    (nvImageCodec) warns on each construction on machines without it. That says nothing
    about the file being read, so it is silenced here only (as a warning in some MONAI
    versions, a log record in others)."""
    plugin_log = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = plugin_log.level
    plugin_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
            yield
    finally:
        plugin_log.setLevel(level)


@TRANSFORMS.register_module()
class LoadCxrImaged:
    """Load a JPG / PNG / DICOM chest X-ray as a (1, H, W) float32 grayscale image on 0..255.

    Args:
        path_key: the sample key holding the file path (kept in the output).
        image_key: the key the image is written to.
        frame: the frame read from multi-frame DICOMs (0-based); ``None`` refuses them
            with their frame count.
        no_window: the range shown for DICOMs without a VOI LUT or window:
            ``'min_max'`` (the image's own) or ``'stored_range'`` (see :mod:`.dicom`).

    JPG / PNG: colour becomes luminance (:mod:`.luminance`), 16-bit PNGs go through
    Pillow's ``convert('L')``. DICOM: :func:`.dicom.read_dicom_image`, the displayed image
    (modality and VOI LUTs, MONOCHROME1 inverted, palette / RGB / YBR to the same
    luminance) mapped onto 0..255, so one ``CxrNormalized(max_value=255)`` serves both.
    DICOM is told by a ``.dcm`` / ``.dicom`` name or, for other names (``IM0001``, UIDs),
    by its ``DICM`` preamble (:func:`.dicom.is_dicom_file`).
    Rows stay first (``reverse_indexing=False``): the usual (H, W) of the picture.
    Raises :class:`ImageLoadError` naming the file when it is missing, truncated,
    cannot be shown (see :func:`.dicom.read_dicom_image`), or smaller than `min_size`
    pixels on a side (a thumbnail or an icon, which resizing would blow up into a blur
    the model reads as an X-ray).
    """

    def __init__(self, path_key: str = "img_path", image_key: str = "img",
                 frame: int | None = None, no_window: NoWindow = "min_max",
                 min_size: int = MIN_IMAGE_SIDE) -> None:
        if no_window not in ("min_max", "stored_range"):
            raise ValueError(f"no_window must be 'min_max' or 'stored_range', not "
                             f"{no_window!r}")
        self.path_key, self.image_key = path_key, image_key
        self.frame, self.no_window = frame, no_window
        self.min_size = int(min_size)
        with _quiet_optional_readers():
            self._pil = LoadImaged(keys=image_key, image_only=True,
                                   ensure_channel_first=True,
                                   reader=PILReader(converter=pil_to_grayscale,
                                                    reverse_indexing=False))

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        path = Path(sample[self.path_key])
        if not path.is_file():
            raise ImageLoadError(f"{path}: image file does not exist")
        out = dict(sample)
        if is_dicom_file(path):
            pixels = read_dicom_image(path, frame=self.frame, no_window=self.no_window)
            out[self.image_key] = MetaTensor(torch.from_numpy(pixels[None]),
                                             meta={"filename_or_obj": str(path)})
            return self._checked_size(out, path)
        out[self.image_key] = str(path)
        try:
            out = self._pil(out)
        except Exception as error:  # MONAI/PIL raise many types; name the file
            raise ImageLoadError(f"{path}: cannot read image ({_reason(error)})") from error
        image = out[self.image_key]
        if image.ndim != 3 or image.shape[0] != 1:
            raise ImageLoadError(f"{path}: expected one grayscale 2D image, got shape "
                                 f"{tuple(image.shape)}")
        return self._checked_size(out, path)

    def _checked_size(self, out: dict[str, Any], path: Path) -> dict[str, Any]:
        height, width = out[self.image_key].shape[-2:]
        if min(height, width) < self.min_size:
            raise ImageLoadError(f"{path}: image is {height} x {width} pixels, smaller than "
                                 f"{self.min_size} pixels on a side; not a radiograph")
        return out


def _reason(error: BaseException) -> str:
    """The innermost message (MONAI wraps reader errors in RuntimeError chains)."""
    messages = []
    while error is not None:
        messages.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    text = messages[-1]
    return text


@TRANSFORMS.register_module()
class ResizeLongestPadd:
    """Resize the long side to ``size`` keeping the aspect ratio, then zero-pad to square.

    MGCA resizes to 256 this way; stretching would change the heart-to-thorax ratio
    that cardiomegaly is read from.
    """

    def __init__(self, keys: str | list[str] = "img", size: int = 256) -> None:
        self._resize = Resized(keys=keys, spatial_size=size, size_mode="longest",
                               mode="area")
        self._pad = SpatialPadd(keys=keys, spatial_size=(size, size), method="symmetric",
                                mode="constant", value=0)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return self._pad(self._resize(dict(sample)))


@TRANSFORMS.register_module()
class CxrCropd(Randomizable):
    """Random ``size`` crop for training, centre crop for evaluation (deterministic)."""

    def __init__(self, keys: str | list[str] = "img", size: int = 224,
                 random: bool = True) -> None:
        self.random = random
        self._crop = (RandSpatialCropd(keys=keys, roi_size=(size, size), random_size=False)
                      if random else CenterSpatialCropd(keys=keys, roi_size=(size, size)))

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> "CxrCropd":
        if self.random:
            self._crop.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:  # the wrapped crop draws its own
        pass

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return self._crop(dict(sample))


@TRANSFORMS.register_module()
class CxrNormalized:
    """Map intensities ``[0, max_value]`` to [0, 1], then to ``(x - mean) / std``.

    ``max_value`` is 255 for JPG / PNG and for DICOM (:class:`LoadCxrImaged` maps the
    displayed DICOM image onto 0..255 whatever its bit depth).
    Fixed bounds (not per-image min/max) keep a uniformly bright image bright.
    Returns a plain ``torch.Tensor`` (no MONAI metadata) so default collation works.
    """

    def __init__(self, keys: str | list[str] = "img", max_value: float = 255.0,
                 mean: float = 0.5, std: float = 0.5) -> None:
        self._scale = ScaleIntensityRanged(keys=keys, a_min=0.0, a_max=max_value,
                                           b_min=0.0, b_max=1.0, clip=True)
        self._normalise = NormalizeIntensityd(keys=keys, subtrahend=mean, divisor=std)
        self._plain = EnsureTyped(keys=keys, data_type="tensor", dtype=torch.float32,
                                  track_meta=False)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return self._plain(self._normalise(self._scale(dict(sample))))


class CxrCompose(Compose):
    """MONAI ``Compose`` that lets :class:`ImageLoadError` through unwrapped.

    MONAI re-raises every failure as ``RuntimeError("applying transform ...")``, which
    hides the file name one level down and defeats ``except ImageLoadError`` in the
    dataset's skip-and-count logic.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except RuntimeError as error:
            cause: BaseException | None = error
            while cause is not None and not isinstance(cause, ImageLoadError):
                cause = cause.__cause__
            if cause is None:
                raise
            raise cause from None


def build_cxr_transforms(train: bool, *, image_size: int = 256, crop_size: int = 224,
                         max_value: float = 255.0, path_key: str = "img_path",
                         image_key: str = "img") -> CxrCompose:
    """MGCA's image pipeline: load, resize long side + pad, crop, normalise.

    Output ``sample[image_key]``: float32 tensor (1, crop_size, crop_size). Padding is
    applied before normalisation, so padded borders read as intensity 0 (-1 after it).
    """
    return CxrCompose([
        LoadCxrImaged(path_key=path_key, image_key=image_key),
        ResizeLongestPadd(keys=image_key, size=image_size),
        CxrCropd(keys=image_key, size=crop_size, random=train),
        CxrNormalized(keys=image_key, max_value=max_value),
    ])


def eval_sizes_from_config(cfg: Mapping) -> tuple[int, int]:
    """``(image_size, crop_size)`` of a config's training pipeline (its ResizeLongestPadd and
    CxrCropd sizes), for the eval transform of the same model: default 256 / 224 where the
    config has no such pipeline or step."""
    image_size, crop_size = 256, 224
    dataset = (cfg.get("train_dataloader") or {}).get("dataset") or {}
    for step in dataset.get("pipeline") or []:
        kind = step.get("type") if isinstance(step, Mapping) else None
        if kind == "ResizeLongestPadd":
            image_size = int(step.get("size", image_size))
        elif kind == "CxrCropd":
            crop_size = int(step.get("size", crop_size))
    return image_size, crop_size
