"""Batch -> model inputs for the driving detectors: stack the camera views, voxelise the
LiDAR sweeps, gather the calibration into tensors (mmdet3d's ``Det3DDataPreprocessor``
with ``voxel=True``, for DeepInteraction++ and its LiDAR-only stage).

What it takes (``pseudo_collate`` of :class:`~interlace.domains.driving.data.transforms.
formatting.Pack3DDetInputs` outputs; a list of per-sample input dicts works too)::

    inputs = {'points': B x (P_b, 5) float [x, y, z, intensity, time lag],
              'img':    B x (V, 3, H_b, W_b) float, already normalised (ImageNormalize)}
    data_samples = B x BaseDataElement(metainfo: lidar2img (V, 4, 4), img_aug_matrix
                   (V, 4, 4), lidar_aug_matrix (4, 4), view_missing (V,), img_shape, ...)

Either modality may be absent: no ``img`` key (a LiDAR-only pipeline), ``None`` for one
sample's entry, or an empty (0, C) point cloud (a dropped LiDAR sweep).

What it returns::

    inputs = {
      'points': B x (P_b, C) on the model's device (raw, for the pillar grid),
      'voxels': {'voxels': (M, max_num_points, C), 'num_points': (M,) int32,
                 'coors': (M, 4) int32 [batch, z, y, x]}
                or, with dynamic voxelisation (voxel_layer max_num_points=-1),
                {'voxels': (N, C) every in-range point, 'coors': (N, 4) int32 its voxel},
      'imgs': (B, V, 3, H_pad, W_pad) or None when no sample has images,
      'batch_geometry': {
          'lidar2img': (B, V, 4, 4) float32 or None (no images),
          'img_aug_matrix': (B, V, 4, 4) float32 or None,
          'lidar_aug_matrix': (B, 4, 4) float32 (identity where the metainfo has none),
          'view_missing': (B, V) bool or None; all True for a sample without images,
          'img_present': (B,) bool, 'points_present': (B,) bool (at least one point),
          'batch_input_shape': (H_pad, W_pad) or None},
    }
    data_samples: the same list; with images each gets metainfo ``batch_input_shape``
        (H_pad, W_pad) and ``pad_shape`` (its own size rounded up to pad_size_divisor).

Why the geometry is stacked here rather than left in the metainfo: every consumer
(ProjectionCorrespondence, the camera decoder layers) wants (B, V, 4, 4) tensors on the
model's device, and stacking once keeps the device copies and the missing-sample fill
(identity matrices, see :meth:`DrivingDataPreprocessor._geometry`) in one place. The
metainfo is left as it was, so evaluation and visualisation still read it per sample.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from interlace.core.engine.registry import MODELS
from interlace.core.ops.voxelize import Voxelization, voxelize_dynamic, voxelize_hard

__all__ = ["DrivingDataPreprocessor", "DEFAULT_VOXEL_LAYER"]

# DeepInteraction++ / TransFusion-L on nuScenes (docs/methods/deepinteraction.md, "LiDAR stream").
DEFAULT_VOXEL_LAYER: dict[str, Any] = dict(
    max_num_points=10, point_cloud_range=[-54.0, -54.0, -5.0, 54.0, 54.0, 3.0],
    voxel_size=[0.075, 0.075, 0.2], max_voxels=(120000, 160000))


def _per_sample(inputs: Any) -> tuple[list[Optional[Tensor]], list[Optional[Tensor]]]:
    """(points, images) as per-sample lists, None where a sample lacks the modality."""
    if isinstance(inputs, Mapping):
        points, imgs = inputs.get("points"), inputs.get("img", inputs.get("imgs"))
        size = len(points) if points is not None else len(imgs) if imgs is not None else 0
        points = list(points) if points is not None else [None] * size
        imgs = list(imgs) if imgs is not None else [None] * size
    elif isinstance(inputs, Sequence):
        points = [sample.get("points") for sample in inputs]
        imgs = [sample.get("img", sample.get("imgs")) for sample in inputs]
    else:
        raise TypeError(f"inputs must be a dict of per-sample lists or a list of dicts, got "
                        f"{type(inputs).__name__}")
    if len(points) != len(imgs):
        raise ValueError(f"inputs hold {len(points)} point clouds and {len(imgs)} image sets")
    return points, imgs


def _meta(sample: Any, key: str) -> Any:
    return None if sample is None else getattr(sample, "metainfo", {}).get(key)


def _token(sample: Any, index: int) -> str:
    return str(_meta(sample, "token") or f"#{index}")


@MODELS.register_module()
class DrivingDataPreprocessor(BaseDataPreprocessor):
    """Voxelise points, pad and stack multi-view images, stack calibration matrices.

    Args:
        voxel: voxelise the points (False leaves ``voxels`` None, e.g. for a camera-only
            model).
        voxel_layer: :class:`~interlace.core.ops.voxelize.Voxelization` arguments; keys
            not given keep :data:`DEFAULT_VOXEL_LAYER` (10 points per voxel, 0.075 x
            0.075 x 0.2 m voxels over [-54, -54, -5, 54, 54, 3], at most 120k voxels in
            training and 160k at test). ``max_num_points=-1`` selects dynamic
            voxelisation: every in-range point is kept with its voxel (``max_voxels`` is
            then unused), for :class:`~interlace.domains.driving.models.lidar.
            DynamicMeanVoxelEncoder`. Why: a cap of 10 points suits 0.075 m voxels but
            drops a third of the points of 0.4 m ones, and which points a full voxel
            keeps depends on their order (key frame first unless shuffled).
        use_images: False drops the images (a LiDAR-only detector fed by a fusion pipeline).
        pad_size_divisor: images are zero-padded (bottom / right) to a multiple of this, and
            to the largest image of the batch; 32 suits a stride-32 backbone + FPN.
        pad_value: fill of the padding (images are normalised, so 0 is the mean colour).
        point_dims: C of an empty point cloud made for a sample without LiDAR.
        non_blocking: passed to mmengine (asynchronous host-to-device copies).
    """

    def __init__(self, voxel: bool = True, voxel_layer: Optional[dict] = None,
                 use_images: bool = True, pad_size_divisor: int = 32, pad_value: float = 0.0,
                 point_dims: int = 5, non_blocking: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        if pad_size_divisor <= 0:
            raise ValueError(f"pad_size_divisor must be positive, got {pad_size_divisor}")
        self.voxel = bool(voxel)
        cfg = {**DEFAULT_VOXEL_LAYER, **(voxel_layer or {})}
        if int(cfg["max_num_points"]) <= 0 and int(cfg["max_num_points"]) != -1:
            raise ValueError("voxel_layer max_num_points must be positive (hard voxelisation) "
                             f"or -1 (dynamic), got {cfg['max_num_points']}")
        self.voxel_layer = Voxelization(**cfg) if self.voxel else None
        self.use_images = bool(use_images)
        self.pad_size_divisor = int(pad_size_divisor)
        self.pad_value = float(pad_value)
        self.point_dims = int(point_dims)

    def forward(self, data: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        """Returns ``dict(inputs=..., data_samples=...)`` as in the module docstring.

        Args:
            data: ``dict(inputs=..., data_samples=...)`` from the dataloader.
            training: picks the training voxel cap (``max_voxels[0]``) over the test one.
        """
        data = self.cast_data(dict(data))
        data_samples = data.get("data_samples")
        points, imgs = _per_sample(data["inputs"])
        batch = len(points)
        if batch == 0:
            raise ValueError("DrivingDataPreprocessor got an empty batch")
        if data_samples is not None and len(data_samples) != batch:
            raise ValueError(f"{len(data_samples)} data samples for {batch} inputs")
        samples = list(data_samples) if data_samples is not None else [None] * batch
        points_present = torch.tensor([p is not None and p.shape[0] > 0 for p in points],
                                      device=self.device)
        points = [p if p is not None else torch.zeros((0, self.point_dims), device=self.device)
                  for p in points]
        if not self.use_images:
            imgs = [None] * batch
        stacked, img_present = self._stack_images(imgs, samples)
        geometry = self._geometry(samples, img_present, stacked)
        geometry["points_present"] = points_present
        voxels = self._voxelize(points, training) if self.voxel else None
        inputs = dict(points=points, voxels=voxels, imgs=stacked, batch_geometry=geometry)
        return dict(inputs=inputs, data_samples=data_samples)

    # --- LiDAR -----------------------------------------------------------------------
    @property
    def dynamic(self) -> bool:
        """Whether the voxelisation is dynamic (``voxel_layer.max_num_points == -1``)."""
        return self.voxel_layer is not None and self.voxel_layer.max_num_points == -1

    def voxelize(self, points: Sequence[Tensor], training: bool) -> dict[str, Tensor]:
        """The ``voxels`` entry of :meth:`forward` for B point clouds (P_b, C) (see the
        module docstring); ``training`` picks the voxel cap. For tools that measure it."""
        if self.voxel_layer is None:
            raise ValueError("this DrivingDataPreprocessor does not voxelise (voxel=False)")
        return self._voxelize(points, training)

    @torch.no_grad()
    def _voxelize(self, points: Sequence[Tensor], training: bool) -> dict[str, Tensor]:
        """Voxelise every sample; prepend its batch index to the (z, y, x) coords."""
        layer = self.voxel_layer
        if self.dynamic:
            kept, coors = [], []
            for index, pts in enumerate(points):
                cells = voxelize_dynamic(pts, layer.voxel_size, layer.point_cloud_range)
                inside = (cells >= 0).all(dim=1)
                # Out-of-range points leave here, so the encoder gets only real voxels.
                kept.append(pts[inside])
                coors.append(F.pad(cells[inside], (1, 0), value=index))
            return dict(voxels=torch.cat(kept), coors=torch.cat(coors))
        cap = layer.max_voxels[0] if training else layer.max_voxels[1]
        voxels, num_points, coors = [], [], []
        for index, pts in enumerate(points):
            # The cap comes from `training` (mmengine's train/val step), not from the
            # module's train() state, which a test loop may leave unchanged.
            v, c, n = voxelize_hard(pts, layer.voxel_size, layer.point_cloud_range,
                                    layer.max_num_points, cap)
            voxels.append(v)
            num_points.append(n)
            coors.append(F.pad(c, (1, 0), value=index))
        return dict(voxels=torch.cat(voxels), num_points=torch.cat(num_points),
                    coors=torch.cat(coors))

    # --- cameras ---------------------------------------------------------------------
    def _stack_images(self, imgs: Sequence[Optional[Tensor]],
                      samples: Sequence[Any]) -> tuple[Optional[Tensor], Tensor]:
        """(B, V, 3, H_pad, W_pad) or None, and which samples have images (B,)."""
        present = torch.tensor([img is not None for img in imgs], device=self.device)
        given = [img for img in imgs if img is not None]
        if not given:
            return None, present
        shapes = {tuple(img.shape[:2]) for img in given}
        if any(img.dim() != 4 for img in given) or len(shapes) != 1:
            listing = {_token(s, i): tuple(img.shape) for i, (img, s)
                       in enumerate(zip(imgs, samples)) if img is not None}
            raise ValueError(f"images must be (V, 3, H, W) with one V and channel count for "
                             f"the batch, got {listing}")
        views, channels = shapes.pop()
        d = self.pad_size_divisor
        height = math.ceil(max(img.shape[2] for img in given) / d) * d
        width = math.ceil(max(img.shape[3] for img in given) / d) * d
        ref = given[0]
        out = ref.new_full((len(imgs), views, channels, height, width), self.pad_value)
        for index, (img, sample) in enumerate(zip(imgs, samples)):
            if img is None:
                # Zeros, not pad_value: a missing sample's views are masked anyway, and
                # zeros keep any accidental use of them inert.
                out[index].zero_()
                continue
            h, w = img.shape[-2:]
            out[index, :, :, :h, :w] = img
            if sample is not None:
                sample.set_metainfo(dict(batch_input_shape=(height, width),
                                         pad_shape=(math.ceil(h / d) * d, math.ceil(w / d) * d)))
        for sample in samples:
            if sample is not None and "batch_input_shape" not in sample.metainfo:
                sample.set_metainfo(dict(batch_input_shape=(height, width)))
        return out, present

    # --- calibration -----------------------------------------------------------------
    def _matrix(self, value: Any, shape: tuple[int, ...], what: str, token: str) -> Tensor:
        mat = torch.as_tensor(value, dtype=torch.float32, device=self.device)
        if tuple(mat.shape) != shape:
            raise ValueError(f"sample {token}: {what} must be {shape}, got {tuple(mat.shape)}")
        return mat

    def _geometry(self, samples: Sequence[Any], img_present: Tensor,
                  imgs: Optional[Tensor]) -> dict[str, Any]:
        """Stack the calibration of the batch (see the module docstring)."""
        batch = len(samples)
        eye4 = torch.eye(4, device=self.device)
        lidar_aug = []
        for index, sample in enumerate(samples):
            value = _meta(sample, "lidar_aug_matrix")
            lidar_aug.append(eye4 if value is None else
                             self._matrix(value, (4, 4), "lidar_aug_matrix", _token(sample, index)))
        geometry: dict[str, Any] = dict(lidar_aug_matrix=torch.stack(lidar_aug),
                                        img_present=img_present, lidar2img=None,
                                        img_aug_matrix=None, view_missing=None,
                                        batch_input_shape=None)
        if imgs is None:
            return geometry
        views = imgs.shape[1]
        # Samples without images get identity matrices, not zeros: the correspondence
        # inverts lidar2img and bev_aug, and a singular matrix would put NaN into
        # tensors that are masked but still flow through the same batched ops.
        eye_views = eye4.expand(views, 4, 4)
        lidar2img, img_aug, missing = [], [], []
        for index, sample in enumerate(samples):
            token = _token(sample, index)
            if not bool(img_present[index]):
                lidar2img.append(eye_views)
                img_aug.append(eye_views)
                missing.append(torch.ones(views, dtype=torch.bool, device=self.device))
                continue
            value = _meta(sample, "lidar2img")
            if value is None:
                raise KeyError(f"sample {token} has images but no 'lidar2img' in its metainfo; "
                               f"the camera stream cannot be placed without calibration")
            lidar2img.append(self._matrix(value, (views, 4, 4), "lidar2img", token))
            value = _meta(sample, "img_aug_matrix")
            img_aug.append(eye_views if value is None else
                           self._matrix(value, (views, 4, 4), "img_aug_matrix", token))
            value = _meta(sample, "view_missing")
            flags = (torch.zeros(views, dtype=torch.bool, device=self.device) if value is None
                     else torch.as_tensor(value, device=self.device).bool().reshape(-1))
            if flags.numel() != views:
                raise ValueError(f"sample {token}: view_missing has {flags.numel()} entries "
                                 f"for {views} views")
            missing.append(flags)
        geometry.update(lidar2img=torch.stack(lidar2img), img_aug_matrix=torch.stack(img_aug),
                        view_missing=torch.stack(missing),
                        batch_input_shape=tuple(imgs.shape[-2:]))
        return geometry
