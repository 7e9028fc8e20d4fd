"""Loading the surround-camera images of a sample (any number of views) with their calibration.

Images are decoded with OpenCV as (H, W, 3) uint8 arrays in **BGR** channel order, as
mmcv's ``imread`` does (``color_type='color'``); :class:`~.image_transforms.ImageNormalize`
with ``to_rgb=True`` turns them into RGB. Calibration comes from the info file's
``images[CAM]`` entries: ``cam2img`` (3 x 3, padded to 4 x 4), ``lidar2cam`` and
``lidar2img`` (original LiDAR points -> original image pixels; computed as
``cam2img @ lidar2cam`` when absent).

A missing or unreadable image becomes a zero image of the other views' size with
``view_missing[v] = True`` (logged): the model's missing-view path ignores it, so one
broken camera file does not stop training. If every view is missing the sample cannot be
used and a :class:`FileNotFoundError` names the files.

A sample without cameras (``images`` empty: a LiDAR-only database, or a dataset with
``cameras=[]``) gets no ``img`` at all, so the image transforms pass it through and the
data preprocessor sees a LiDAR-only batch: a fusion detector then takes its LiDAR-only
path.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

import cv2
import numpy as np
from mmengine.logging import print_log

from interlace.core.engine.registry import TRANSFORMS

__all__ = ["LoadMultiViewImages", "pad_intrinsics"]


def pad_intrinsics(cam2img: Any) -> np.ndarray:
    """A 3 x 3 (or already 4 x 4) intrinsic matrix as a 4 x 4 float64 matrix."""
    k = np.asarray(cam2img, dtype=np.float64)
    if k.shape == (4, 4):
        return k
    if k.shape != (3, 3):
        raise ValueError(f"cam2img must be 3 x 3 or 4 x 4, got shape {k.shape}")
    out = np.eye(4)
    out[:3, :3] = k
    return out


@TRANSFORMS.register_module()
class LoadMultiViewImages:
    """Load every camera of ``results['images']``, in its order (V views, any V >= 0).

    Args:
        to_float32: return float32 images instead of uint8.
        color_type: ``'color'`` (3-channel BGR, as mmcv) or ``'unchanged'``.
    """

    def __init__(self, to_float32: bool = False, color_type: str = "color") -> None:
        flags = {"color": cv2.IMREAD_COLOR, "unchanged": cv2.IMREAD_UNCHANGED}
        if color_type not in flags:
            raise ValueError(f"color_type must be one of {sorted(flags)}, got {color_type!r}")
        self.to_float32 = to_float32
        self.color_type = color_type
        self._flag = flags[color_type]

    def _read(self, path: str) -> tuple[Optional[np.ndarray], str]:
        if not os.path.isfile(path):
            return None, "file does not exist"
        # imread returns None (no exception) for files it cannot decode.
        image = cv2.imread(path, self._flag)
        if image is None:
            return None, "cannot decode image"
        if image.ndim == 2:
            image = image[..., None]
        return image, ""

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """Adds, for V views:

        - ``img``: list of V (H, W, 3) uint8 (or float32) BGR arrays;
        - ``img_shape`` / ``ori_shape``: (H, W);
        - ``cam2img``, ``lidar2cam``, ``lidar2img``: (V, 4, 4) float64;
        - ``img_aug_matrix``: (V, 4, 4) identity (original -> network pixels);
        - ``view_missing``: (V,) bool; ``img_path``: list of V paths;
        - ``cam_names``: list of V camera names.

        With no cameras (``images`` empty) only ``cam_names = []`` is added.
        """
        if "images" not in results:
            raise KeyError(f"LoadMultiViewImages: sample {results.get('token')} has no "
                           f"'images' entry")
        images = results["images"]
        if not images:
            results["cam_names"] = []
            return results
        names = list(images)
        paths = [os.fspath(images[n]["img_path"]) for n in names]
        loaded: list[Optional[np.ndarray]] = []
        problems: list[str] = []
        for path in paths:
            image, why = self._read(path)
            loaded.append(image)
            problems.append(why)
        present = [im for im in loaded if im is not None]
        if not present:
            listing = "; ".join(f"{p} ({w})" for p, w in zip(paths, problems))
            raise FileNotFoundError(f"sample {results.get('token')}: no camera image could be "
                                    f"read: {listing}")
        shapes = {im.shape for im in present}
        if len(shapes) > 1:
            listing = ", ".join(f"{p}: {im.shape}" for p, im in zip(paths, loaded)
                                if im is not None)
            raise ValueError(f"sample {results.get('token')}: camera images differ in size "
                             f"({listing}); all views must share one size")
        shape = present[0].shape
        missing = np.array([im is None for im in loaded])
        for path, why, image in zip(paths, problems, loaded):
            if image is None:
                print_log(f"{path}: camera view replaced by zeros ({why})", logger="current",
                          level=logging.WARNING)
        dtype = np.float32 if self.to_float32 else present[0].dtype
        imgs = [np.zeros(shape, dtype) if im is None else im.astype(dtype, copy=False)
                for im in loaded]

        cam2img = np.stack([pad_intrinsics(images[n]["cam2img"]) for n in names])
        lidar2cam = np.stack([np.asarray(images[n]["lidar2cam"], np.float64) for n in names])
        lidar2img = np.stack([
            np.asarray(images[n]["lidar2img"], np.float64) if "lidar2img" in images[n]
            else cam2img[v] @ lidar2cam[v] for v, n in enumerate(names)])

        results["img"] = imgs
        results["img_path"] = paths
        results["cam_names"] = names
        results["img_shape"] = tuple(shape[:2])
        results["ori_shape"] = tuple(shape[:2])
        results["cam2img"] = cam2img
        results["lidar2cam"] = lidar2cam
        results["lidar2img"] = lidar2img
        results["img_aug_matrix"] = np.tile(np.eye(4), (len(names), 1, 1))
        results["view_missing"] = missing
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(to_float32={self.to_float32}, "
                f"color_type={self.color_type!r})")
