"""Render one nuScenes sample: a bird's-eye view (LiDAR points of the key frame and its
sweeps, boxes, ego at the origin, range rings) beside the six camera images with the
boxes' 3D edges projected into them. Ground truth and predictions get one colour each.

Everything is read from an mmdet3d v1.x info entry and the files under the data root
(``samples/``, ``sweeps/``), so it works on info files written by mmdet3d as well as by
Interlace, without the training dataset classes. The BEV is drawn in the ego frame of
the key frame with forward (+x) pointing up, whatever way the LiDAR is mounted.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from interlace.core.engine.atomic_files import atomic_path
from interlace.core.ops.box_geometry import box_corners_3d

from ..data.nuscenes_names import LIDAR
from .box_frames import global_to_lidar

__all__ = ["GT_COLOUR", "PRED_COLOUR", "resolve_data_file", "load_points", "sample_points",
           "gt_boxes", "prediction_boxes", "project_box_edges", "render_sample"]

GT_COLOUR = (0, 200, 0)         # RGB
PRED_COLOUR = (255, 40, 40)
# The nuScenes viewer's layout: front cameras on top, back cameras below.
CAMERA_GRID = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
               ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))
# Box edges as corner-index pairs (corner order of box_corners_3d).
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
             (0, 4), (1, 5), (2, 6), (3, 7))
FRONT_CROSS = ((0, 7), (3, 4))  # diagonals of the front face (corners 0, 3, 4, 7)
MIN_DEPTH = 0.1  # m: a box with a corner closer to (or behind) the camera plane is skipped


def resolve_data_file(data_root: str | os.PathLike, path: str, folder: str) -> Path:
    """Find a file named in an info file: absolute, relative to `data_root`, or a bare
    name inside ``data_root/<folder>`` (mmdet3d v1.x stores bare names)."""
    root = Path(data_root)
    candidates = [Path(path), root / path, root / folder / Path(path).name]
    if folder.startswith("samples/"):  # sweeps are named by their own folder
        candidates.append(root / folder.replace("samples/", "sweeps/", 1) / Path(path).name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: not found as given, under {root} or {root / folder}")


def load_points(path: str | os.PathLike, dims: int = 5) -> np.ndarray:
    """``(P, dims)`` float32 points of a nuScenes ``.pcd.bin`` (x, y, z, intensity, ring)."""
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % dims:
        raise ValueError(f"{path}: {raw.size} floats is not a multiple of {dims} per point")
    return raw.reshape(-1, dims)


def sample_points(info: Mapping[str, Any], data_root: str, max_sweeps: Optional[int] = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Points of the key frame and its sweeps, in the key frame's LiDAR frame.

    Returns:
        ``(P, 3)`` xyz and ``(P,)`` bool, true for key-frame points.
    """
    lidar = info["lidar_points"]
    key = load_points(resolve_data_file(data_root, lidar["lidar_path"], f"samples/{LIDAR}"))
    clouds, is_key = [key[:, :3]], [np.ones(len(key), bool)]
    sweeps = info.get("lidar_sweeps") or []
    for sweep in sweeps[:max_sweeps]:
        points = load_points(resolve_data_file(data_root, sweep["lidar_points"]["lidar_path"],
                                               f"sweeps/{LIDAR}"))[:, :3]
        # lidar2sensor maps the key LiDAR frame into the sweep's sensor frame.
        sensor2lidar = np.linalg.inv(np.asarray(sweep["lidar_points"]["lidar2sensor"], float))
        clouds.append(points @ sensor2lidar[:3, :3].T + sensor2lidar[:3, 3])
        is_key.append(np.zeros(len(points), bool))
    return np.concatenate(clouds), np.concatenate(is_key)


def gt_boxes(info: Mapping[str, Any], valid_only: bool = True) -> np.ndarray:
    """``(N, 7)`` GT boxes of an info entry (LiDAR frame, geometric centre); with
    `valid_only` only those DetectionEval keeps (``bbox_3d_isvalid``)."""
    rows = [inst["bbox_3d"] for inst in info.get("instances", [])
            if not valid_only or inst.get("bbox_3d_isvalid", True)]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def prediction_boxes(submission: Mapping[str, Any], info: Mapping[str, Any],
                     score_thr: float = 0.0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A sample's submission boxes (global frame) moved back into its LiDAR frame.

    Returns:
        ``(N, 9)`` boxes, their class names and ``(N,)`` scores, for scores >= `score_thr`.
    """
    entries = [e for e in submission["results"].get(info["token"], [])
               if e["detection_score"] >= score_thr]
    if not entries:
        return np.zeros((0, 9)), [], np.zeros(0)
    boxes = global_to_lidar(
        [e["translation"] for e in entries], [e["size"] for e in entries],
        [e["rotation"] for e in entries], [e["velocity"] for e in entries],
        info["lidar_points"]["lidar2ego"], info["ego2global"])
    return (boxes, [e["detection_name"] for e in entries],
            np.array([e["detection_score"] for e in entries]))


def _corners(boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros((0, 8, 3))
    return box_corners_3d(torch.as_tensor(np.asarray(boxes)[:, :7], dtype=torch.float64)).numpy()


def project_box_edges(boxes: np.ndarray, lidar2cam: np.ndarray, cam2img: np.ndarray,
                      image_size: tuple[int, int]) -> np.ndarray:
    """Pixel segments of the boxes' edges in one camera.

    Args:
        boxes: ``(N, 7+)`` LiDAR-frame boxes.
        lidar2cam: ``(4, 4)``; cam2img: ``(3, 3)`` or ``(4, 4)`` intrinsics.
        image_size: ``(width, height)``.

    Returns:
        ``(M, 14, 2, 2)``: for each of the M boxes in front of the camera (every corner
        deeper than ``MIN_DEPTH``) and overlapping the image, its 12 edges and the two
        diagonals marking the front face, as pixel ``(start, end)`` pairs.
    """
    corners = _corners(boxes)                                            # (N, 8, 3)
    homogeneous = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], -1)
    in_cam = homogeneous @ np.asarray(lidar2cam, float).T                # (N, 8, 4)
    depth = in_cam[..., 2]
    intrinsic = np.asarray(cam2img, float)[:3, :3]
    pixels = in_cam[..., :3] @ intrinsic.T
    pixels = pixels[..., :2] / np.maximum(depth, MIN_DEPTH)[..., None]
    width, height = image_size
    in_front = np.all(depth > MIN_DEPTH, axis=1)
    overlaps = ((pixels[..., 0].max(1) >= 0) & (pixels[..., 0].min(1) < width)
                & (pixels[..., 1].max(1) >= 0) & (pixels[..., 1].min(1) < height))
    keep = pixels[in_front & overlaps]
    pairs = np.array(BOX_EDGES + FRONT_CROSS)
    return np.stack([keep[:, pairs[:, 0]], keep[:, pairs[:, 1]]], axis=2)


def _draw_in_image(image: np.ndarray, segments: np.ndarray, colour: Sequence[int]) -> None:
    import cv2
    thickness = max(1, round(image.shape[1] / 800))
    for box in segments:
        for (x0, y0), (x1, y1) in box:
            cv2.line(image, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))),
                     tuple(int(c) for c in colour), thickness, cv2.LINE_AA)


def _to_ego(xyz: np.ndarray, lidar2ego: np.ndarray) -> np.ndarray:
    return xyz @ lidar2ego[:3, :3].T + lidar2ego[:3, 3]


def _draw_bev(ax, points: np.ndarray, is_key: np.ndarray, boxes_by_colour: list,
              lidar2ego: np.ndarray, bev_range: float) -> None:
    # Plot ego-frame (x forward, y left) as (-y, x) so forward is up and left is left.
    ego_points = _to_ego(points, lidar2ego)
    near = np.all(np.abs(ego_points[:, :2]) < bev_range, axis=1)
    for mask, colour, size in ((near & ~is_key, "#9a9a9a", 0.15), (near & is_key, "#202020", 0.3)):
        ax.scatter(-ego_points[mask, 1], ego_points[mask, 0], s=size, c=colour, linewidths=0)
    for ring in range(10, int(bev_range) + 1, 10):
        ax.add_patch(_circle(ring))
        ax.text(0.7 * ring, 0.7 * ring, f"{ring} m", fontsize=7, color="#4060a0")
    for boxes, colour in boxes_by_colour:
        corners = _corners(boxes)[:, :4]                                  # bottom face
        for box, square in zip(boxes, corners):
            square = _to_ego(square, lidar2ego)
            loop = np.vstack([square, square[:1]])
            ax.plot(-loop[:, 1], loop[:, 0], color=np.array(colour) / 255, linewidth=1.0)
            centre = _to_ego(np.asarray(box[None, :3], float), lidar2ego)[0]
            front = 0.5 * (square[0] + square[3])
            ax.plot([-centre[1], -front[1]], [centre[0], front[0]],
                    color=np.array(colour) / 255, linewidth=1.0)
    ax.add_patch(_ego_marker())
    ax.set_xlim(-bev_range, bev_range)
    ax.set_ylim(-bev_range, bev_range)
    ax.set_aspect("equal")
    ax.set_xlabel("-y [m] (ego left is plot left)")
    ax.set_ylabel("x (forward) [m]")


def _circle(radius: float):
    from matplotlib.patches import Circle
    return Circle((0, 0), radius, fill=False, color="#4060a0", linewidth=0.6, linestyle="--")


def _ego_marker():
    from matplotlib.patches import Polygon
    # An arrow-shaped ego car, 4.5 m x 1.8 m, pointing forward (+x is up on the plot).
    return Polygon([(-0.9, -1.0), (0.9, -1.0), (0.9, 2.5), (0.0, 3.5), (-0.9, 2.5)],
                   closed=True, color="#1f5fbf")


def render_sample(info: Mapping[str, Any], data_root: str, out_path: str | os.PathLike,
                  predictions: Optional[np.ndarray] = None, max_sweeps: Optional[int] = None,
                  bev_range: float = 55.0, title: str = "") -> Path:
    """Draw `info`'s sample to a PNG at `out_path` (written atomically).

    Args:
        info: one ``data_list`` entry of an mmdet3d v1.x info file.
        data_root: folder holding ``samples/`` and ``sweeps/``.
        out_path: the PNG to write.
        predictions: ``(N, 7+)`` LiDAR-frame boxes to draw in ``PRED_COLOUR``.
        max_sweeps: sweeps to add to the BEV (default: all in the info entry).
        bev_range: half-width of the BEV in metres.
        title: text above the figure.
    """
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = gt_boxes(info)
    pred = np.zeros((0, 7)) if predictions is None else np.asarray(predictions, float)
    lidar2ego = np.asarray(info["lidar_points"]["lidar2ego"], float)
    points, is_key = sample_points(info, data_root, max_sweeps)
    figure = plt.figure(figsize=(26, 9), dpi=80)
    grid = figure.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.25], wspace=0.03, hspace=0.08)
    images = info.get("images") or {}
    for row, names in enumerate(CAMERA_GRID):
        for column, camera in enumerate(names):
            ax = figure.add_subplot(grid[row, column])
            ax.set_axis_off()
            ax.set_title(camera, fontsize=9)
            entry = images.get(camera)
            if entry is None or not entry.get("img_path"):
                ax.text(0.5, 0.5, "no image", ha="center", transform=ax.transAxes)
                continue
            path = resolve_data_file(data_root, entry["img_path"], f"samples/{camera}")
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{path}: not a readable image")
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            size = (image.shape[1], image.shape[0])
            for boxes, colour in ((gt, GT_COLOUR), (pred, PRED_COLOUR)):
                _draw_in_image(image, project_box_edges(boxes, entry["lidar2cam"],
                                                        entry["cam2img"], size), colour)
            ax.imshow(image)
    ax = figure.add_subplot(grid[:, 3])
    _draw_bev(ax, points, is_key, [(gt, GT_COLOUR), (pred, PRED_COLOUR)], lidar2ego, bev_range)
    ax.set_title(f"BEV (ego frame): {len(gt)} GT (green), {len(pred)} predicted (red), "
                 f"{int(is_key.sum())} + {int((~is_key).sum())} sweep points", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=11)
    out_path = Path(out_path)
    try:
        with atomic_path(out_path) as temp:
            figure.savefig(temp, bbox_inches="tight", format=out_path.suffix[1:] or "png")
    finally:
        plt.close(figure)
    return out_path

