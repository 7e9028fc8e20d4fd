"""Moving 3D boxes between the key frame's LiDAR frame and the nuScenes global frame.

A LiDAR-frame box is the row ``(x, y, z, l, w, h, yaw, vx, vy)`` of
:mod:`interlace.domains.driving.data.nuscenes_names` (geometric centre, yaw about +z from
+x). A global box is what the nuScenes tables and the submission JSON hold: ``translation``
(centre), ``size`` as ``(w, l, h)``, ``rotation`` as a ``(w, x, y, z)`` quaternion and
``velocity`` ``(vx, vy)`` in m/s.

The chain is the one mmdet3d's exporter applies to a devkit ``Box``
(``box.rotate(q(lidar2ego)); box.translate(t); box.rotate(q(ego2global)); ...``), done
here on whole arrays: the centre goes through ``ego2global @ lidar2ego``, the orientation
is ``q(ego2global) * q(lidar2ego) * q(yaw about z)`` and the velocity ``(vx, vy, 0)`` is
rotated by the same two rotations (it is a direction, so no translation).
"""
from __future__ import annotations

import numpy as np

__all__ = ["rotation_to_quaternion", "quaternion_multiply", "quaternion_yaw",
           "lidar_to_global", "global_to_lidar"]


def _check_pose(matrix: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: expected a finite 4x4 matrix, got shape {m.shape}")
    rotation = m[:3, :3]
    # float32 info files carry ~1e-7 error; anything far off is not a rigid transform.
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4):
        raise ValueError(f"{name}: the upper-left 3x3 block is not a rotation matrix")
    return m


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` as ``(w, x, y, z)``
    with ``w >= 0`` (the sign is fixed so equal rotations give equal numbers)."""
    r = np.asarray(rotation, dtype=np.float64)
    # Shepperd's method: pick the largest of the four squared components to divide by,
    # so the result stays accurate near 180-degree rotations.
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    squares = np.stack([1 + trace, 1 + 2 * r[..., 0, 0] - trace,
                        1 + 2 * r[..., 1, 1] - trace, 1 + 2 * r[..., 2, 2] - trace], -1)
    pick = np.argmax(squares, axis=-1)
    big = 0.5 * np.sqrt(np.maximum(np.take_along_axis(squares, pick[..., None], -1)[..., 0],
                                   1e-300))
    q = np.empty(r.shape[:-2] + (4,))
    d21, d02, d10 = r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]
    s01, s02, s12 = r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1]
    cases = [np.stack([big, d21 / (4 * big), d02 / (4 * big), d10 / (4 * big)], -1),
             np.stack([d21 / (4 * big), big, s01 / (4 * big), s02 / (4 * big)], -1),
             np.stack([d02 / (4 * big), s01 / (4 * big), big, s12 / (4 * big)], -1),
             np.stack([d10 / (4 * big), s02 / (4 * big), s12 / (4 * big), big], -1)]
    for index, value in enumerate(cases):
        mask = pick == index
        q[mask] = value[mask]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of ``(..., 4)`` ``(w, x, y, z)`` quaternions (broadcast);
    as rotations, ``b`` is applied first."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quaternion_yaw(quaternion: np.ndarray) -> np.ndarray:
    """Heading of ``(..., 4)`` quaternions: the angle of the rotated +x axis in the xy
    plane (the devkit's ``quaternion_yaw``), in ``(-pi, pi]``."""
    w, x, y, z = np.moveaxis(np.asarray(quaternion, dtype=np.float64), -1, 0)
    # First column of the rotation matrix, projected on the xy plane.
    return np.arctan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z))


def lidar_to_global(boxes: np.ndarray, lidar2ego: np.ndarray, ego2global: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LiDAR-frame boxes -> global nuScenes boxes.

    Args:
        boxes: ``(N, 9)`` ``(x, y, z, l, w, h, yaw, vx, vy)``; ``(N, 7)`` means zero
            velocity.
        lidar2ego, ego2global: ``(4, 4)`` poses of the key frame.

    Returns:
        translation ``(N, 3)``, size ``(N, 3)`` as ``(w, l, h)``, rotation ``(N, 4)``
        ``(w, x, y, z)`` and velocity ``(N, 2)``, all in the global frame.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] not in (7, 9):
        raise ValueError(f"boxes: expected (N, 7) or (N, 9), got shape {b.shape}")
    lidar2global = _check_pose(ego2global, "ego2global") @ _check_pose(lidar2ego, "lidar2ego")
    rotation = lidar2global[:3, :3]
    translation = b[:, :3] @ rotation.T + lidar2global[:3, 3]
    size = b[:, [4, 3, 5]]
    half = 0.5 * b[:, 6]
    yaw_q = np.stack([np.cos(half), np.zeros_like(half), np.zeros_like(half), np.sin(half)], -1)
    quaternion = quaternion_multiply(rotation_to_quaternion(rotation), yaw_q)
    quaternion /= np.linalg.norm(quaternion, axis=-1, keepdims=True)
    quaternion = np.where(quaternion[:, :1] < 0, -quaternion, quaternion)
    velocity = np.zeros((len(b), 3))
    if b.shape[1] == 9:
        velocity[:, :2] = b[:, 7:9]
    velocity = velocity @ rotation.T
    return translation, size, quaternion, velocity[:, :2]


def global_to_lidar(translation: np.ndarray, size: np.ndarray, rotation: np.ndarray,
                    velocity: np.ndarray, lidar2ego: np.ndarray, ego2global: np.ndarray
                    ) -> np.ndarray:
    """Global nuScenes boxes -> ``(N, 9)`` LiDAR-frame boxes (inverse of
    :func:`lidar_to_global`).

    Args:
        translation: ``(N, 3)`` centres; size ``(N, 3)`` ``(w, l, h)``; rotation ``(N, 4)``
            ``(w, x, y, z)``; velocity ``(N, 2)`` (NaN allowed, kept).
        lidar2ego, ego2global: ``(4, 4)`` poses of the key frame.

    Returns:
        ``(N, 9)`` ``(x, y, z, l, w, h, yaw, vx, vy)``. Roll and pitch of the box in the
        LiDAR frame (from a tilted sensor or ego pose) are dropped, as mmdet3d's info
        converter does: only the heading is kept.
    """
    global2lidar = np.linalg.inv(_check_pose(ego2global, "ego2global")
                                 @ _check_pose(lidar2ego, "lidar2ego"))
    rot = global2lidar[:3, :3]
    t = np.asarray(translation, dtype=np.float64).reshape(-1, 3)
    s = np.asarray(size, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(rotation, dtype=np.float64).reshape(-1, 4)
    v = np.zeros((len(t), 3))
    v[:, :2] = np.asarray(velocity, dtype=np.float64).reshape(-1, 2)
    centre = t @ rot.T + global2lidar[:3, 3]
    local_q = quaternion_multiply(rotation_to_quaternion(rot), q)
    yaw = quaternion_yaw(local_q)
    v = v @ rot.T
    return np.concatenate([centre, s[:, [1, 0, 2]], yaw[:, None], v[:, :2]], axis=1)
