"""Running the driving detectors with a sensor missing (robustness studies, `--drop`).

What each option does to the data preprocessor's output (before any network runs):

- ``'camera'`` in ``drop_modalities``: the images and their geometry are removed, as for
  a LiDAR-only pipeline. DeepInteraction then marks stream B absent: the encoder's LiDAR
  stream takes its intra-modal path (no cross-modal pairs, no spreading) and the
  decoder's camera layers keep their queries, i.e. a LiDAR-only path through the same
  weights.
- ``'lidar'`` in ``drop_modalities``: every point cloud becomes empty (0, C); there are
  no voxels, so the sparse encoder returns an all-zero BEV, and the pillar grid and the
  depth map are empty. The BEV stream stays *present*: the encoder's global dense
  spreading still writes camera features into it along the camera rays, and the
  decoder's camera layers still sample the images, so DeepInteraction runs a camera-only
  path (trained with LiDAR, its boxes are then weak but well-formed).
- ``drop_views``: K views per sample (or the listed view indices) are marked in
  ``view_missing`` on top of the data's own flags; random K views are drawn from a
  generator seeded once per batch with ``seed``, so a test run is reproducible.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch

__all__ = ["MODALITIES", "check_drop_modalities", "drop_modalities_from_inputs",
           "drop_camera_views"]

MODALITIES = ("lidar", "camera")
ViewSpec = Union[int, Sequence[int]]


def check_drop_modalities(names: Sequence[str]) -> tuple[str, ...]:
    """Validated names as a tuple; KeyError for unknown ones (tools/test.py reports those),
    ValueError when nothing would be left."""
    names = tuple(dict.fromkeys(str(n) for n in names))
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown:
        raise KeyError(f"cannot drop unknown modalities {unknown}; known: {list(MODALITIES)}")
    if set(names) == set(MODALITIES):
        raise ValueError("drop_modalities cannot drop both 'lidar' and 'camera': no input left")
    return names


def drop_modalities_from_inputs(inputs: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """A shallow copy of the preprocessor's ``inputs`` without the named modalities."""
    if not names:
        return inputs
    out = dict(inputs)
    geometry = dict(out["batch_geometry"])
    if "camera" in names:
        out["imgs"] = None
        batch = len(out["points"])
        device = geometry["lidar_aug_matrix"].device
        geometry.update(lidar2img=None, img_aug_matrix=None, view_missing=None,
                        batch_input_shape=None,
                        img_present=torch.zeros(batch, dtype=torch.bool, device=device))
    if "lidar" in names:
        out["points"] = [p[:0] for p in out["points"]]
        voxels = out.get("voxels")
        if voxels is not None:
            out["voxels"] = {key: value[:0] for key, value in voxels.items()}
        geometry["points_present"] = torch.zeros_like(geometry["points_present"])
    out["batch_geometry"] = geometry
    return out


def drop_camera_views(view_missing: torch.Tensor, drop_views: ViewSpec, seed: int = 0
                      ) -> torch.Tensor:
    """view_missing (B, V) with more views marked missing.

    Args:
        view_missing: (B, V) bool, the data's own flags.
        drop_views: an int K (K random views per sample, drawn among all V) or a sequence
            of view indices dropped in every sample.
        seed: seed of the generator drawing the random views.
    """
    out = view_missing.clone().to(torch.bool)
    batch, views = out.shape
    if isinstance(drop_views, int):
        if not 0 <= drop_views <= views:
            raise ValueError(f"drop_views={drop_views} outside [0, {views}] views")
        if drop_views == 0:
            return out
        generator = torch.Generator().manual_seed(int(seed))
        for sample in range(batch):
            chosen = torch.randperm(views, generator=generator)[:drop_views]
            out[sample, chosen.to(out.device)] = True
        return out
    indices = [int(i) for i in drop_views]
    if any(not 0 <= i < views for i in indices):
        raise ValueError(f"drop_views {indices} outside the {views} views")
    out[:, indices] = True
    return out
