"""Camera image augmentation (resize + crop, BEVFusion's ``ImageAug3D``) and normalisation.

Pixel coordinates are continuous, pixel (i, j) covering ``[j, j + 1) x [i, i + 1)`` (the
convention of :mod:`interlace.core.interaction.projection_geometry`). Every geometric
change of view ``v`` is a 2D affine map ``p' = L p + t`` of those coordinates, composed into
``img_aug_matrix[v]`` (4 x 4, BEVFusion layout: ``L`` in ``[:2, :2]``, ``t`` in ``[:2, 3]``)
so that ``img_aug_matrix @ lidar2img`` takes original points to network-input pixels.

The image itself is resampled once, with ``cv2.warpAffine`` on the composed map: resize,
crop (zero padding where the crop leaves the image), optional flip and rotation in one pass.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from interlace.core.engine.registry import TRANSFORMS

__all__ = ["ImageResizeCrop", "ImageNormalize"]

_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
                  "bicubic": cv2.INTER_CUBIC}


def _affine(linear: np.ndarray, shift: Sequence[float]) -> np.ndarray:
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = shift
    return m


def _as_bevfusion_4x4(m3: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:2, :2] = m3[:2, :2]
    out[:2, 3] = m3[:2, 2]
    return out


@TRANSFORMS.register_module()
class ImageResizeCrop:
    """Per-view random resize, crop, flip and rotation of the camera images.

    Args:
        final_dim: (H, W) of the network input.
        resize_lim: (low, high) scale factor; training draws it uniformly, testing takes
            the mean.
        bot_pct_lim: (low, high) fraction of the resized height cut from the bottom
            (the crop's bottom edge sits at ``(1 - pct) * new_H``); testing takes the mean.
        rot_lim: (low, high) rotation in degrees (counter-clockwise on screen), default 0.
        rand_flip: flip left-right with probability 0.5 in training.
        is_train: draw the parameters at random (else the deterministic test setting:
            mean scale, centred crop horizontally, no flip, no rotation).
        interpolation: ``'bilinear'`` (default), ``'nearest'`` or ``'bicubic'``.

    The resize uses the exact ratio ``new_W / W`` (and ``new_H / H``) of the integer
    resized size, so the matrix matches the pixels even when ``W * scale`` is fractional.
    """

    def __init__(self, final_dim: Sequence[int], resize_lim: Sequence[float],
                 bot_pct_lim: Sequence[float] = (0.0, 0.0),
                 rot_lim: Sequence[float] = (0.0, 0.0), rand_flip: bool = False,
                 is_train: bool = False, interpolation: str = "bilinear") -> None:
        if len(final_dim) != 2 or min(final_dim) <= 0:
            raise ValueError(f"final_dim must be (H, W) > 0, got {final_dim}")
        if min(resize_lim) <= 0:
            raise ValueError(f"resize_lim must be positive, got {resize_lim}")
        if interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, "
                             f"got {interpolation!r}")
        self.final_dim = (int(final_dim[0]), int(final_dim[1]))
        self.resize_lim = tuple(float(v) for v in resize_lim)
        self.bot_pct_lim = tuple(float(v) for v in bot_pct_lim)
        self.rot_lim = tuple(float(v) for v in rot_lim)
        self.rand_flip = rand_flip
        self.is_train = is_train
        self.interpolation = interpolation

    def sample_augmentation(self, height: int, width: int) -> dict[str, Any]:
        """Draw (or fix, in test mode) the parameters for one (height, width) image."""
        f_h, f_w = self.final_dim
        if self.is_train:
            scale = np.random.uniform(*self.resize_lim)
            new_w, new_h = int(width * scale), int(height * scale)
            crop_h = int((1 - np.random.uniform(*self.bot_pct_lim)) * new_h) - f_h
            crop_w = int(np.random.uniform(0, max(0, new_w - f_w)))
            flip = bool(self.rand_flip and np.random.choice([0, 1]))
            rotate = float(np.random.uniform(*self.rot_lim))
        else:
            scale = float(np.mean(self.resize_lim))
            new_w, new_h = int(width * scale), int(height * scale)
            crop_h = int((1 - float(np.mean(self.bot_pct_lim))) * new_h) - f_h
            crop_w = int(max(0, new_w - f_w) / 2)
            flip, rotate = False, 0.0
        return dict(resize_dims=(new_w, new_h), crop=(crop_w, crop_h), flip=flip,
                    rotate=rotate)

    def pixel_transform(self, height: int, width: int, params: dict[str, Any]) -> np.ndarray:
        """(3, 3) homogeneous map of continuous pixel coordinates, input -> output."""
        f_h, f_w = self.final_dim
        new_w, new_h = params["resize_dims"]
        crop_w, crop_h = params["crop"]
        m = _affine(np.diag([new_w / width, new_h / height]), (-crop_w, -crop_h))
        if params["flip"]:
            m = _affine(np.diag([-1.0, 1.0]), (f_w, 0.0)) @ m
        if params["rotate"]:
            # PIL's Image.rotate(deg) about the output's centre (BEVFusion's ImageAug3D).
            theta = np.deg2rad(params["rotate"])
            rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
            centre = np.array([f_w, f_h], dtype=np.float64) / 2
            m = _affine(rot, centre - rot @ centre) @ m
        return m

    def _warp(self, image: np.ndarray, m: np.ndarray) -> np.ndarray:
        # warpAffine indexes pixel centres: index i sits at continuous i + 0.5.
        linear, shift = m[:2, :2], m[:2, 2]
        to_index = np.concatenate([linear, (shift + linear @ [0.5, 0.5] - 0.5)[:, None]], 1)
        f_h, f_w = self.final_dim
        out = cv2.warpAffine(image, to_index, (f_w, f_h), flags=_INTERPOLATION[self.interpolation],
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out[..., None] if out.ndim == 2 else out

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``img``: V arrays (H, W, C) -> V arrays (final_H, final_W, C), same dtype;
        ``img_aug_matrix`` (V, 4, 4) composed with each view's map; ``img_shape`` =
        final_dim; ``img_aug_params``: the V parameter dicts. A sample without ``img``
        (no cameras) passes unchanged."""
        if "img" not in results:
            return results
        images = results["img"]
        aug = np.asarray(results.get("img_aug_matrix", np.tile(np.eye(4), (len(images), 1, 1))),
                         dtype=np.float64)
        new_images, new_aug, params_list = [], [], []
        for v, image in enumerate(images):
            height, width = image.shape[:2]
            params = self.sample_augmentation(height, width)
            m = self.pixel_transform(height, width, params)
            new_images.append(self._warp(image, m))
            new_aug.append(_as_bevfusion_4x4(m) @ aug[v])
            params_list.append(params)
        results["img"] = new_images
        results["img_aug_matrix"] = np.stack(new_aug)
        results["img_shape"] = self.final_dim
        results["img_aug_params"] = params_list
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(final_dim={self.final_dim}, resize_lim="
                f"{self.resize_lim}, bot_pct_lim={self.bot_pct_lim}, rot_lim={self.rot_lim}, "
                f"rand_flip={self.rand_flip}, is_train={self.is_train})")


@TRANSFORMS.register_module()
class ImageNormalize:
    """``(img - mean) / std`` per channel, to float32 (mmcv's ``imnormalize``).

    Args:
        mean, std: per-channel values in the output channel order (RGB if ``to_rgb``),
            on the 0-255 scale; the defaults are ImageNet's.
        to_rgb: swap BGR (as loaded) to RGB first.
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375), to_rgb: bool = True) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {std}")
        if self.mean.shape != (3,) or self.std.shape != (3,):
            raise ValueError(f"mean and std need 3 values (one per channel), got {mean}, {std}")
        # cv2's arithmetic takes a per-channel scalar as a (1, C) float64 array.
        self._mean64 = self.mean.astype(np.float64).reshape(1, -1)
        self._inv_std64 = (1.0 / self.std.astype(np.float64)).reshape(1, -1)
        self.to_rgb = to_rgb

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        """``img``: V arrays (H, W, C) -> V float32 arrays (H, W, C); adds ``img_norm_cfg``.
        A sample without ``img`` (no cameras) passes unchanged."""
        if "img" not in results:
            return results
        out = []
        for image in results["img"]:
            if image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"ImageNormalize: expected (H, W, 3) images, got "
                                 f"{image.shape}")
            x = image.astype(np.float32)
            # In place with OpenCV (as mmcv's imnormalize): one float copy per view.
            if self.to_rgb:
                cv2.cvtColor(x, cv2.COLOR_BGR2RGB, x)
            cv2.subtract(x, self._mean64, x)
            cv2.multiply(x, self._inv_std64, x)
            out.append(x)
        results["img"] = out
        results["img_norm_cfg"] = dict(mean=self.mean.tolist(), std=self.std.tolist(),
                                       to_rgb=self.to_rgb)
        return results
